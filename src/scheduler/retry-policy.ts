// When a failed attempt is tried again: a policy for the farm, and rules for builds that
// carry a given tag (the first rule whose tag the build carries wins). Pure: the
// scheduler asks, the policy answers.
import { KilnError } from '../errors.js';
import type { Tag } from './tags.js';

/** How an attempt can fail. Missing inputs are not a failure: the build waits for them. */
export const FAILURE_KINDS = ['failure', 'timeout', 'silent-timeout', 'setup-failure', 'agent-lost', 'infrastructure', 'output-too-large', 'log-too-large'] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

export interface RetryRule {
  /** Attempts in all, the first included; 1 means never retry. */
  maxAttempts: number;
  /** Which failures are retried. */
  on: FailureKind[];
  /** Wait before the second attempt; doubles for each further one, up to maxBackoffMs. */
  initialBackoffMs: number;
  maxBackoffMs: number;
}

export interface RetryPolicy {
  farm: RetryRule;
  byTag: { tag: Tag; rule: RetryRule }[];
}

/**
 * The default: a lost agent, a setup failure or an agent that could not reach the
 * coordinator for its whole retry budget (`infrastructure`) is not the build's fault, so
 * those are tried again (three attempts in all); a build that failed, ran out of time,
 * or made an output or a log over the coordinator's size limits, failed.
 */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  farm: { maxAttempts: 3, on: ['agent-lost', 'setup-failure', 'infrastructure'], initialBackoffMs: 5_000, maxBackoffMs: 300_000 },
  byTag: [],
};

export type RetryDecision = { retry: false } | { retry: true; delayMs: number };

/**
 * `failedAttempts` counts this build's failed attempts of the kinds the rule retries,
 * this one included.
 */
export function decideRetry(policy: RetryPolicy, tags: Tag[], kind: FailureKind, failedAttempts: number): RetryDecision {
  const rule = ruleFor(policy, tags);
  if (!rule.on.includes(kind) || failedAttempts >= rule.maxAttempts) return { retry: false };
  const delayMs = Math.min(rule.maxBackoffMs, rule.initialBackoffMs * 2 ** Math.max(0, failedAttempts - 1));
  return { retry: true, delayMs };
}

export function ruleFor(policy: RetryPolicy, tags: Tag[]): RetryRule {
  return policy.byTag.find((r) => tags.some((t) => t.key === r.tag.key && t.value === r.tag.value))?.rule ?? policy.farm;
}

/** Checks a rule from configuration, naming what is wrong. */
export function validateRetryRule(rule: RetryRule, where: string): RetryRule {
  if (!Number.isInteger(rule.maxAttempts) || rule.maxAttempts < 1) {
    throw new KilnError('invalid_argument', `${where}: maxAttempts must be an integer of at least 1, not ${rule.maxAttempts}`);
  }
  for (const kind of rule.on) {
    if (!(FAILURE_KINDS as readonly string[]).includes(kind)) {
      throw new KilnError('invalid_argument', `${where}: ${JSON.stringify(kind)} is not a failure kind (${FAILURE_KINDS.join(', ')})`);
    }
  }
  if (!(rule.initialBackoffMs >= 0) || !(rule.maxBackoffMs >= rule.initialBackoffMs)) {
    throw new KilnError('invalid_argument', `${where}: backoff must satisfy 0 <= initialBackoffMs <= maxBackoffMs`);
  }
  return rule;
}
