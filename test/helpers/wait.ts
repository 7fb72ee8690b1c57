// Waiting on a coordinator's build events for a condition, with a bound: no sleeps.
import type { Coordinator } from '../../src/coordinator/coordinator.js';

/**
 * Resolves when `check` (run now and after every build change) returns true; rejects
 * after `timeoutMs` with `describe()`'s account of what was still missing.
 */
export function waitForBuilds(
  coordinator: Coordinator,
  check: () => Promise<boolean>,
  timeoutMs: number,
  describe: () => Promise<string>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = false;
    let running = Promise.resolve();
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      off();
      if (err) reject(err);
      else resolve();
    };
    const evaluate = () => {
      running = running.then(async () => {
        if (done) return;
        try {
          if (await check()) finish();
        } catch (err) {
          finish(err as Error);
        }
      });
    };
    const off = coordinator.events.on(evaluate);
    const timer = setTimeout(() => {
      void describe().then((what) => finish(new Error(`timed out after ${timeoutMs} ms: ${what}`)));
    }, timeoutMs);
    evaluate();
  });
}

/**
 * Resolves once `url` answers 200 (a server the test started is listening); rejects after
 * `timeoutMs`. Each try waits for the connection's own outcome, not a fixed sleep.
 */
export async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) });
      await res.body?.cancel();
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    // Connection refused comes back at once: yield to the event loop before the next try.
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${url}: ${last}`);
}
