// Waiting for a condition with a bound, no sleeps: on a coordinator's build events, on a
// logger's lines, or (for another process, which sends no events here) by asking again.
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
 * Resolves when `check` returns true, asked every `everyMs` (for state in another
 * process); rejects after `timeoutMs` with `describe()`'s account of what was missing.
 */
export async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, describe: () => Promise<string> | string, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms: ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, Math.min(everyMs, Math.max(1, deadline - Date.now()))));
  }
}

/** Resolves once `url` answers 200 (a server the test started is listening); rejects after `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  let last = '';
  await waitUntil(
    async () => {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(1, timeoutMs)) });
        await res.body?.cancel();
        last = `HTTP ${res.status}`;
        return res.status === 200;
      } catch (err) {
        last = (err as Error).message;
        return false;
      }
    },
    timeoutMs,
    () => `${url}: ${last}`,
    50,
  );
}
