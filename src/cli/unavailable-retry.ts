// Riding out a coordinator that is briefly out of reach (a restart) in the commands that
// follow builds for a long time (build watch, submit --wait, log --follow): a call that
// fails UNAVAILABLE is tried again with backoff for up to a bound, said once on stderr per
// outage; any other error, or an outage past the bound, is the command's error. A stream
// the coordinator resets as it shuts down arrives as CANCELED: the CLI never cancels its
// own calls, so that too is the coordinator going away.
import { Code, ConnectError } from '@connectrpc/connect';
import { Backoff, delay } from '../backoff.js';

/** How long one outage is ridden out before the command gives up. */
export const UNAVAILABLE_RETRY_MS = 120_000;

/** What a coordinator out of reach, or one shutting down under a call, looks like to a call. */
const OUTAGE_CODES: ReadonlySet<Code> = new Set([Code.Unavailable, Code.Canceled]);

export class UnavailableRetry {
  private outageSince: number | undefined;
  private readonly backoff = new Backoff({ initialMs: 250, maxMs: 5_000 });

  constructor(private readonly retryForMs = UNAVAILABLE_RETRY_MS) {}

  /** Runs `call` until it succeeds, fails otherwise, or the coordinator stays away too long. */
  async run<T>(call: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        const result = await call();
        if (this.outageSince !== undefined) console.error('kiln: the coordinator answers again');
        this.outageSince = undefined;
        this.backoff.reset();
        return result;
      } catch (err) {
        if (!(err instanceof ConnectError) || !OUTAGE_CODES.has(err.code)) throw err;
        const now = Date.now();
        if (this.outageSince === undefined) {
          this.outageSince = now;
          console.error(`kiln: the coordinator is unavailable (${err.rawMessage}); trying again for up to ${this.retryForMs / 1000} s`);
        } else if (now - this.outageSince >= this.retryForMs) {
          throw err;
        }
        await delay(this.backoff.next());
      }
    }
  }
}
