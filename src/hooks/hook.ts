// What a hook is: a handler for some event types, run at least once per event, with its
// own concurrency and retry limits. Built-in hooks and operators' hooks (a command, a
// module) are all this one shape.
import type { Logger } from '../logger.js';

export const EVENT_TYPES = [
  'build-submitted',
  'build-started',
  'build-success',
  'build-failure',
  'build-canceled',
  'build-missing-inputs',
  'build-setup-failure',
  'build-agent-lost',
  'build-retried',
  'build-reproducible',
  'build-unreproducible',
  'agent-connected',
  'agent-lost',
  // QA: a fixed-output re-check ended (qa/fod-check-results.ts).
  'fod-check-passed',
  'fod-check-failed',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** An event as hooks receive it (and as a command hook reads it, as JSON, on stdin). */
export interface HookEvent {
  id: number;
  type: string;
  buildId: string | null;
  agentId: string | null;
  payload: Record<string, unknown>;
  createdAt: string;
  /** Which delivery of this event to this hook this is, from 1 (more than 1: a retry). */
  attempt: number;
}

export interface HookContext {
  log: Logger;
  /** Aborts when the hook's time is up or the coordinator stops. */
  signal: AbortSignal;
}

export interface Hook {
  readonly name: string;
  /** Event types it takes ('*' for all). */
  readonly events: readonly string[];
  /** Deliveries it runs at once (per coordinator). */
  readonly concurrency: number;
  /** Deliveries before an event is parked. */
  readonly maxAttempts: number;
  /** How long one delivery may run before it is counted as failed. */
  readonly timeoutMs: number;
  handle(event: HookEvent, ctx: HookContext): Promise<void>;
}

/** Everything about a hook but what it does. */
export type HookSettings = Pick<Hook, 'name' | 'events' | 'concurrency' | 'maxAttempts' | 'timeoutMs'>;

export function takes(hook: Hook, type: string): boolean {
  return hook.events.includes('*') || hook.events.includes(type);
}

/** The wait before the next delivery after `attempts` failed ones: doubling from 1 s, at most 5 minutes. */
export function retryDelayMs(attempts: number): number {
  return Math.min(300_000, 1000 * 2 ** Math.max(0, attempts - 1));
}
