// PostgreSQL may abort a statement that did nothing wrong: a deadlock it broke, or a
// serialization failure. Running it again is the remedy; kiln's statements that change
// many rows at once (batched reports) do so rather than fail every caller of the batch.

const TRANSIENT = new Set(['40P01', '40001']); // deadlock_detected, serialization_failure

function isTransient(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === 'string' && TRANSIENT.has(e.code)) return true;
  }
  return false;
}

/** Runs `statement`, again (up to `attempts` times in all) while it fails transiently. */
export async function retryingTransient<T>(statement: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await statement();
    } catch (err) {
      if (attempt >= attempts || !isTransient(err)) throw err;
    }
  }
}
