// PostgreSQL may abort a statement that did nothing wrong: a deadlock it broke, or a
// serialization failure. Running it again is the remedy; kiln's statements that change
// many rows at once (batched reports) do so rather than fail every caller of the batch.
// A database out of reach (refused, closed, shutting down) is told apart too: the API
// answers UNAVAILABLE for it, so that callers wait it out.

const TRANSIENT = new Set(['40P01', '40001']); // deadlock_detected, serialization_failure

/** PostgreSQL SQLSTATEs of a server going away or not there yet (classes 08 and 57P). */
const UNAVAILABLE_SQLSTATE = /^(08\d{3}|57P0[1-4])$/;
/** postgres.js's own codes for a connection lost or never made, and Node's. */
const CONNECTION_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH']);

/** The error codes along an error's cause chain (drizzle wraps the driver's error as its cause). */
function codesOf(err: unknown): string[] {
  const codes: string[] = [];
  const seen: unknown[] = [];
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e && !seen.includes(e); e = e.cause as typeof e) {
    seen.push(e);
    if (typeof e.code === 'string') codes.push(e.code);
  }
  return codes;
}

function isTransient(err: unknown): boolean {
  return codesOf(err).some((c) => TRANSIENT.has(c));
}

export function isDatabaseUnavailable(err: unknown): boolean {
  return codesOf(err).some((c) => CONNECTION_CODES.has(c) || UNAVAILABLE_SQLSTATE.test(c));
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

/**
 * SQLSTATE classes in which the database refused the data or the statement itself
 * (data exception, integrity constraint, syntax or access rule): doing it again fails
 * again. Anything else (a lost connection, a server shutting down, a full disk) may pass.
 */
const REFUSED_CLASSES = new Set(['22', '23', '42']);

/**
 * Whether `err` will recur however often the same work is tried: the database refused
 * the data, or kiln's own code is at fault (a TypeError and the like). What may pass
 * (outages, I/O) is not.
 */
export function isLastingFailure(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return REFUSED_CLASSES.has(e.code.slice(0, 2));
    if (e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError || e instanceof ReferenceError) return true;
  }
  return false;
}
