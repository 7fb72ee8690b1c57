// The agent's one retry loop: which errors are waited out, for how long, and what it
// throws when the budget is spent.
import { describe, expect, test } from '@jest/globals';
import { Code, ConnectError } from '@connectrpc/connect';
import { HttpStatusError, isTransient, RetryBudgetSpent, retryTransient } from '../../../src/agent/backoff.js';

const quiet = { warn: () => undefined };
const nodeError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:1`), { code });

describe('isTransient', () => {
  test('takes the statuses of a coordinator away or restarting as transient, refusals not', () => {
    for (const code of [Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Canceled]) expect(isTransient(new ConnectError('x', code))).toBe(true);
    for (const code of [Code.InvalidArgument, Code.FailedPrecondition, Code.PermissionDenied, Code.NotFound, Code.ResourceExhausted, Code.Internal]) {
      expect(isTransient(new ConnectError('x', code))).toBe(false);
    }
  });

  test('finds a broken connection anywhere along the cause chain, whatever status it was given', () => {
    expect(isTransient(new ConnectError('read ECONNRESET', Code.Internal, undefined, undefined, nodeError('ECONNRESET')))).toBe(true);
    expect(isTransient(new Error('fetch failed', { cause: nodeError('ECONNREFUSED') }))).toBe(true);
    expect(isTransient(new Error('terminated', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) }))).toBe(true);
    expect(isTransient(new Error('no such file', { cause: nodeError('ENOENT') }))).toBe(false);
  });

  test('takes an HTTP 5xx or 429 as transient, a 404 or 403 not', () => {
    expect(isTransient(new Error('x', { cause: new HttpStatusError('503', 503) }))).toBe(true);
    expect(isTransient(new HttpStatusError('429', 429))).toBe(true);
    expect(isTransient(new HttpStatusError('404', 404))).toBe(false);
    expect(isTransient(new HttpStatusError('403', 403))).toBe(false);
  });
});

describe('retryTransient', () => {
  const opts = (budgetMs: number) => ({ what: 'the call', signal: new AbortController().signal, budgetMs, log: quiet, initialMs: 1, maxMs: 4 });

  test('retries transient failures until the call succeeds, telling onTransient of each', async () => {
    const seen: unknown[] = [];
    let tries = 0;
    const result = await retryTransient({ ...opts(10_000), onTransient: (e) => seen.push(e) }, async (n) => {
      tries = n;
      if (n < 4) throw new ConnectError('down', Code.Unavailable);
      return 'done';
    });
    expect([result, tries, seen.length]).toEqual(['done', 4, 3]);
  });

  test('throws a refusal at once', async () => {
    let tries = 0;
    await expect(
      retryTransient(opts(10_000), async () => {
        tries++;
        throw new ConnectError('bad', Code.InvalidArgument);
      }),
    ).rejects.toThrow('bad');
    expect(tries).toBe(1);
  });

  test('gives up with RetryBudgetSpent, naming the call, the tries and the last error, once the budget is spent', async () => {
    let clock = 0;
    const err = await retryTransient({ ...opts(1_000), now: () => clock }, async () => {
      clock += 400;
      throw new ConnectError('still down', Code.Unavailable);
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryBudgetSpent);
    expect((err as RetryBudgetSpent).tries).toBe(3);
    expect((err as Error).message).toMatch(/^the call: still failing after 3 tries over 1 s: \[unavailable\] still down$/);
  });

  test('stops waiting at once when its signal aborts', async () => {
    const abort = new AbortController();
    const run = retryTransient({ ...opts(60_000), initialMs: 60_000, maxMs: 60_000, signal: abort.signal }, async () => {
      throw new ConnectError('down', Code.Unavailable);
    });
    setImmediate(() => abort.abort(new Error('stopping')));
    await expect(run).rejects.toThrow('stopping');
  });
});
