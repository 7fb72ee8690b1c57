// The scheduler's pure rules: derived priority over a waits graph, the fair-share pick,
// and the retry decision.
import { describe, expect, test } from '@jest/globals';
import { computeDerived } from '../../../src/scheduler/priorities.js';
import { pickFairly } from '../../../src/scheduler/fair-share.js';
import { decideRetry, DEFAULT_RETRY_POLICY, validateRetryRule, type RetryPolicy } from '../../../src/scheduler/retry-policy.js';

describe('computeDerived', () => {
  test('a chain inherits the highest priority of everything above it', () => {
    // top (9) waits on mid (1), which waits on leaf (0); an outside waiter (5) waits on leaf.
    const derived = computeDerived(
      [
        { id: 'top', priority: 9 },
        { id: 'mid', priority: 1 },
        { id: 'leaf', priority: 0 },
      ],
      [
        { input: 'mid', waiter: 'top', waiterDerived: 9 },
        { input: 'leaf', waiter: 'mid', waiterDerived: 1 },
        { input: 'leaf', waiter: 'outside', waiterDerived: 5 },
      ],
    );
    expect(Object.fromEntries(derived)).toEqual({ top: 9, mid: 9, leaf: 9 });
  });

  test('an ignored waiter (a canceled build) no longer lends its priority', () => {
    const derived = computeDerived(
      [
        { id: 'mid', priority: 1 },
        { id: 'leaf', priority: 0 },
      ],
      [
        { input: 'mid', waiter: 'top', waiterDerived: 9 },
        { input: 'leaf', waiter: 'mid', waiterDerived: 9 },
        { input: 'leaf', waiter: 'other', waiterDerived: 4 },
      ],
      new Set(['top']),
    );
    expect(Object.fromEntries(derived)).toEqual({ mid: 1, leaf: 4 });
  });

  test('a diamond takes the maximum over both paths', () => {
    const derived = computeDerived(
      [
        { id: 'a', priority: 2 },
        { id: 'b', priority: 7 },
        { id: 'base', priority: 0 },
      ],
      [
        { input: 'base', waiter: 'a', waiterDerived: 2 },
        { input: 'base', waiter: 'b', waiterDerived: 7 },
      ],
    );
    expect(derived.get('base')).toBe(7);
  });
});

describe('pickFairly', () => {
  const c = (id: string, share: string, priority = 0, seq = 0) => ({ id, share, priority, seq });

  test('gives slots to the group with the fewest running builds first', () => {
    const picked = pickFairly([c('a1', 'alice', 5, 1), c('a2', 'alice', 5, 2), c('b1', 'bob', 0, 3)], new Map([['alice', 3], ['bob', 0]]), 2);
    expect(picked).toEqual(['b1', 'a1']);
  });

  test('alternates between equally loaded groups, highest priority within each', () => {
    const picked = pickFairly(
      [c('a1', 'alice', 1, 1), c('a2', 'alice', 3, 2), c('b1', 'bob', 2, 3), c('b2', 'bob', 0, 4)],
      new Map(),
      4,
    );
    expect(picked).toEqual(['a2', 'b1', 'a1', 'b2']);
  });

  test('never picks more than it has', () => {
    expect(pickFairly([c('x', '')], new Map(), 5)).toEqual(['x']);
  });
});

describe('decideRetry', () => {
  const policy: RetryPolicy = {
    farm: { maxAttempts: 3, on: ['agent-lost'], initialBackoffMs: 1000, maxBackoffMs: 3000 },
    byTag: [{ tag: { key: 'flaky', value: 'yes' }, rule: { maxAttempts: 2, on: ['failure'], initialBackoffMs: 10, maxBackoffMs: 10 } }],
  };

  test('retries the kinds the rule names, with doubling backoff up to the cap, until the attempts run out', () => {
    expect(decideRetry(policy, [], 'agent-lost', 1)).toEqual({ retry: true, delayMs: 1000 });
    expect(decideRetry(policy, [], 'agent-lost', 2)).toEqual({ retry: true, delayMs: 2000 });
    expect(decideRetry(policy, [], 'agent-lost', 3)).toEqual({ retry: false });
    expect(decideRetry(policy, [], 'failure', 1)).toEqual({ retry: false });
  });

  test('a tag rule replaces the farm rule for builds that carry the tag', () => {
    const tags = [{ key: 'flaky', value: 'yes' }];
    expect(decideRetry(policy, tags, 'failure', 1)).toEqual({ retry: true, delayMs: 10 });
    expect(decideRetry(policy, tags, 'agent-lost', 1)).toEqual({ retry: false });
  });

  test('the default retries what is not the build\'s fault and nothing else', () => {
    expect(decideRetry(DEFAULT_RETRY_POLICY, [], 'agent-lost', 1).retry).toBe(true);
    expect(decideRetry(DEFAULT_RETRY_POLICY, [], 'setup-failure', 1).retry).toBe(true);
    expect(decideRetry(DEFAULT_RETRY_POLICY, [], 'infrastructure', 1).retry).toBe(true);
    expect(decideRetry(DEFAULT_RETRY_POLICY, [], 'failure', 1).retry).toBe(false);
    expect(decideRetry(DEFAULT_RETRY_POLICY, [], 'timeout', 1).retry).toBe(false);
  });

  test('a rule from configuration is checked with a message that names the problem', () => {
    expect(() => validateRetryRule({ maxAttempts: 0, on: [], initialBackoffMs: 0, maxBackoffMs: 0 }, 'retry.farm')).toThrow(/retry.farm: maxAttempts/);
    expect(() => validateRetryRule({ maxAttempts: 2, on: ['boom' as never], initialBackoffMs: 0, maxBackoffMs: 0 }, 'x')).toThrow(/"boom" is not a failure kind/);
  });
});
