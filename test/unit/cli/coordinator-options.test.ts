// The coordinator's scheduling flags: what an operator writes becomes the farm's policy,
// and a mistake is a usage error that says what is wrong.
import { describe, expect, test } from '@jest/globals';
import { schedulingOptions } from '../../../src/cli/commands/coordinator.js';
import { UsageError } from '../../../src/cli/usage-error.js';

const base = { allocation: 'priority-first', 'only-submitted': false };

describe('kiln coordinator scheduling flags', () => {
  test('retries, kinds, backoff and per-tag rules make the retry policy', () => {
    const opts = schedulingOptions({
      ...base,
      retries: '2',
      'retry-on': 'failure,agent-lost',
      'retry-backoff': '10',
      'retry-tag': ['flaky=yes:4:timeout:30', 'team=ops:0'],
    });
    expect(opts.retryPolicy!.farm).toEqual({ maxAttempts: 3, on: ['failure', 'agent-lost'], initialBackoffMs: 10_000, maxBackoffMs: 300_000 });
    expect(opts.retryPolicy!.byTag).toEqual([
      { tag: { key: 'flaky', value: 'yes' }, rule: { maxAttempts: 5, on: ['timeout'], initialBackoffMs: 30_000, maxBackoffMs: 300_000 } },
      { tag: { key: 'team', value: 'ops' }, rule: { maxAttempts: 1, on: ['failure', 'agent-lost'], initialBackoffMs: 10_000, maxBackoffMs: 300_000 } },
    ]);
  });

  test('limits, lease, allocation and missing-input submission', () => {
    const opts = schedulingOptions({ ...base, allocation: 'fair-share:owner', lease: '60', timeout: '3600', 'max-load-per-cpu': '1.5', 'min-free-disk-gib': '2', 'only-submitted': true });
    expect(opts.allocationPolicy!.name).toBe('fair-share:owner');
    expect(opts.leaseMs).toBe(60_000);
    expect(opts.defaultLimits).toEqual({ timeoutSeconds: 3600, maxSilentSeconds: 0 });
    expect(opts.loadLimits).toEqual({ maxLoadPerCpu: 1.5, minFreeDiskBytes: 2 * 2 ** 30 });
    expect(opts.submitMissingInputs).toBe(false);
  });

  test.each([
    [{ allocation: 'random' }, /--allocation "random" is not priority-first or fair-share:TAG-KEY/],
    [{ 'retry-on': 'failure,boom' }, /--retry-on: "boom" is not one of failure, timeout/],
    [{ 'retry-tag': ['flaky'] }, /--retry-tag "flaky" is not KEY=VALUE:RETRIES/],
    [{ 'max-load-per-cpu': 'lots' }, /--max-load-per-cpu must be a number/],
    [{ lease: '-5' }, /--lease must not be negative/],
  ])('refuses %j', (bad, message) => {
    expect(() => schedulingOptions({ ...base, ...bad })).toThrow(UsageError);
    expect(() => schedulingOptions({ ...base, ...bad })).toThrow(message);
  });
});
