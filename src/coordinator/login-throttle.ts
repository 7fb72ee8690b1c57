// Slows password and token guessing: after a few failures for one key (an agent, a peer
// address) further attempts are refused unchecked for a while that doubles with each
// failure, and the refusal says until when. Nothing is slowed for a caller that has not failed.
import { Code, ConnectError } from '@connectrpc/connect';

export interface LoginThrottleOptions {
  /** Failures allowed for one agent before its attempts are refused for a while. */
  freeFailures: number;
  /** The same for one peer address ("peer:…" keys), which may be the address of many agents. */
  peerFreeFailures: number;
  /** The first wait; it doubles with each further failure, up to maxWaitMs. */
  baseWaitMs: number;
  maxWaitMs: number;
  /** How many keys are remembered (the oldest are forgotten first). */
  maxKeys: number;
  now: () => number;
}

export const DEFAULT_LOGIN_THROTTLE: LoginThrottleOptions = { freeFailures: 5, peerFreeFailures: 20, baseWaitMs: 1_000, maxWaitMs: 5 * 60_000, maxKeys: 100_000, now: () => Date.now() };

interface Failures {
  count: number;
  /** Attempts are refused until then. */
  until: number;
}

export class LoginThrottle {
  private readonly failures = new Map<string, Failures>();
  private readonly opts: LoginThrottleOptions;

  constructor(opts: Partial<LoginThrottleOptions> = {}) {
    this.opts = { ...DEFAULT_LOGIN_THROTTLE, ...opts };
  }

  /** Refuses (RESOURCE_EXHAUSTED) while any of the keys is waiting out its failures. */
  check(keys: string[], what: string): void {
    const now = this.opts.now();
    for (const key of keys) {
      const f = this.failures.get(key);
      if (!f || f.until <= now) continue;
      const seconds = Math.ceil((f.until - now) / 1000);
      throw new ConnectError(
        `too many failed logins (${f.count} for ${key.replace(':', ' ')}): ${what} may try again in ${seconds} s`,
        Code.ResourceExhausted,
      );
    }
  }

  failed(keys: string[]): void {
    const now = this.opts.now();
    for (const key of keys) {
      const previous = this.failures.get(key);
      const count = (previous?.count ?? 0) + 1;
      this.failures.delete(key); // re-inserted last: the map's order is the age
      // The failure that reaches the free count starts the first wait.
      const over = count - (key.startsWith('peer:') ? this.opts.peerFreeFailures : this.opts.freeFailures);
      const until = over >= 0 ? now + Math.min(this.opts.maxWaitMs, this.opts.baseWaitMs * 2 ** Math.min(over, 30)) : 0;
      this.failures.set(key, { count, until });
      if (this.failures.size > this.opts.maxKeys) this.failures.delete(this.failures.keys().next().value!);
    }
  }

  succeeded(keys: string[]): void {
    for (const key of keys) this.failures.delete(key);
  }
}
