// Waiting out the coordinator: delays that grow exponentially with full jitter (so that
// many agents that lost the coordinator at once do not all come back in the same
// instant), which errors are worth waiting out, and the one retry loop every call the
// agent makes against the coordinator goes through, bounded by a budget of time.
import { Code, ConnectError } from '@connectrpc/connect';

import { Backoff, delay } from '../backoff.js';

/** How long the agent keeps trying the coordinator before it gives a build up, by default. */
export const DEFAULT_RETRY_FOR_MS = 30 * 60_000;

/**
 * Statuses that say "not now" rather than "no": the peer is down, restarting or
 * overloaded. CANCELED is one when the caller did not cancel (retryTransient checks its
 * signal first): an HTTP/2 stream reset because its connection went away.
 */
const TRANSIENT_CODES = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Canceled]);
/**
 * Node's codes for a connection that could not be made or broke off (a peer SIGKILLed
 * mid-call shows as a reset or a closed HTTP/2 session, whatever status that became).
 */
const NETWORK_ERROR = /^(ECONNREFUSED|ECONNRESET|ECONNABORTED|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENETDOWN|EAI_AGAIN|ENOTFOUND|UND_ERR_\w+|ERR_HTTP2_\w+)$/;

/** An HTTP answer that says the server (or a proxy before it) cannot serve now. */
export class HttpStatusError extends Error {
  override name = 'HttpStatusError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

function causes(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && !chain.includes(e); e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}

/**
 * Whether an error is worth waiting out: the coordinator unreachable, restarting, its
 * database away (it answers UNAVAILABLE then), a connection broken off, an HTTP 5xx or
 * 429. A refusal (INVALID_ARGUMENT, FAILED_PRECONDITION, a 404, ...) is not.
 */
export function isTransient(err: unknown): boolean {
  return causes(err).some((e) => {
    if (e instanceof ConnectError && TRANSIENT_CODES.has(e.code)) return true;
    if (e instanceof HttpStatusError) return e.status >= 500 || e.status === 429;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_ERROR.test(code)) return true;
    // undici's fetch says only "fetch failed" (its cause has the code); connect-node a
    // stream that ended before its trailers when the peer vanished.
    const message = e instanceof Error ? e.message : '';
    return /socket hang up|other side closed|premature close|missing trailer|stream closed with error code NGHTTP2_/i.test(message);
  });
}

/** The budget was spent on transient errors: the coordinator stayed out of reach. */
export class RetryBudgetSpent extends Error {
  override name = 'RetryBudgetSpent';
  constructor(
    readonly what: string,
    readonly tries: number,
    readonly spentMs: number,
    cause: unknown,
  ) {
    super(`${what}: still failing after ${tries} tries over ${Math.round(spentMs / 1000)} s: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

export interface RetryOptions {
  /** What is being tried, for logs and the final error (e.g. "upload of output out"). */
  what: string;
  signal: AbortSignal;
  /** How long transient errors are retried before giving up, from the first try. */
  budgetMs: number;
  log: { warn(obj: object, msg: string): void };
  initialMs?: number;
  maxMs?: number;
  /** Told of each transient failure before the wait (e.g. to move to another coordinator). */
  onTransient?: (err: unknown) => void;
  /** Overrides `isTransient` for errors this call site knows more about. */
  transient?: (err: unknown) => boolean;
  now?: () => number;
}

/**
 * Runs `attempt` until it resolves, retrying transient errors with backoff and jitter
 * until `budgetMs` is spent (then RetryBudgetSpent). Anything else, or an abort, is
 * thrown at once. `attempt` is told which try it is (1 first).
 */
export async function retryTransient<T>(opts: RetryOptions, attempt: (tryNumber: number) => Promise<T>): Promise<T> {
  const now = opts.now ?? Date.now;
  const started = now();
  const backoff = new Backoff({ initialMs: opts.initialMs ?? 250, maxMs: opts.maxMs ?? 15_000 });
  const transient = opts.transient ?? isTransient;
  for (let tryNumber = 1; ; tryNumber++) {
    try {
      return await attempt(tryNumber);
    } catch (err) {
      if (opts.signal.aborted || !transient(err)) throw err;
      opts.onTransient?.(err);
      const spent = now() - started;
      const left = opts.budgetMs - spent;
      if (left <= 0) throw new RetryBudgetSpent(opts.what, tryNumber, spent, err);
      const wait = Math.min(left, backoff.next());
      const code = err instanceof ConnectError ? Code[err.code] : undefined;
      opts.log.warn({ err: (err as Error).message, code, try: tryNumber, retryInMs: wait, budgetLeftMs: left }, `${opts.what} failed; retrying`);
      await delay(wait, opts.signal);
    }
  }
}
