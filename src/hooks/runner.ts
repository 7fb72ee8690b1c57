// Runs the hooks: fans new events out into deliveries, and keeps each hook's workers busy
// up to its concurrency. Lifecycle: start → running → stop (no new deliveries claimed,
// running ones finish or are aborted, and an aborted one is simply delivered again by
// whichever coordinator claims it next: at least once, never lost).
import type { Database } from '../db/connection.js';
import type { Logger } from '../logger.js';
import { claimDeliveries, deliveryDone, deliveryFailed, FAN_OUT_BATCH, fanOut, renewDelivery } from './deliveries.js';
import { retryDelayMs, type Hook, type HookContext, type HookEvent } from './hook.js';

export interface HookRunnerOptions {
  db: Database;
  hooks: Hook[];
  log: Logger;
  /** How often to look for work unprompted: retries that came due, other replicas' events. */
  pollMs?: number;
  /**
   * How long a claimed delivery stays this coordinator's without a renewal (default 30 s):
   * a running one renews it every third of that, so a dead coordinator's delivery is
   * taken by another within about this long, whatever the hook's time limit.
   */
  leaseMs?: number;
}

export const DEFAULT_HOOK_LEASE_MS = 30_000;

/** How one delivery ended, for whoever watches (tests, metrics). */
export interface DeliveryOutcome {
  hook: string;
  eventId: number;
  eventType: string;
  attempt: number;
  outcome: 'done' | 'retry' | 'parked' | 'interrupted';
  error?: string;
}

export class HookRunner {
  private readonly watchers = new Set<(d: DeliveryOutcome) => void>();
  private readonly active = new Map<string, number>();
  private readonly running = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private pass: Promise<void> | undefined;
  private again = false;
  /**
   * New events may wait to be fanned out. A delivery that ends only frees a slot: the
   * pass it prompts claims, without reading the event table for nothing.
   */
  private eventsWaiting = true;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: HookRunnerOptions) {}

  start(): void {
    if (this.opts.hooks.length === 0) return;
    this.timer = setInterval(() => this.poke(), this.opts.pollMs ?? 1000);
    this.timer.unref();
    this.poke();
  }

  /** New events may have been written (or retried), here or on another replica. */
  poke(): void {
    this.eventsWaiting = true;
    this.slotFree();
  }

  /** A delivery slot came free, or deliveries may have come due. */
  private slotFree(): void {
    if (this.stopping.signal.aborted || this.opts.hooks.length === 0) return;
    if (this.pass) {
      this.again = true;
      return;
    }
    this.pass = (async () => {
      do {
        this.again = false;
        try {
          await this.runPass();
        } catch (err) {
          this.opts.log.error({ err }, 'hook pass failed');
        }
      } while (this.again && !this.stopping.signal.aborted);
    })().finally(() => {
      this.pass = undefined;
    });
  }

  /** Calls `watch` after every delivery; returns a function that stops it. */
  onDelivery(watch: (d: DeliveryOutcome) => void): () => void {
    this.watchers.add(watch);
    return () => this.watchers.delete(watch);
  }

  private tell(d: DeliveryOutcome): void {
    for (const w of this.watchers) w(d);
  }

  /** Resolves when no pass runs and no delivery is in flight (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.pass || this.running.size > 0) await Promise.all([this.pass, ...this.running]);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.stopping.abort(new Error('the coordinator is stopping'));
    await this.idle();
  }

  private async runPass(): Promise<void> {
    if (this.eventsWaiting) {
      this.eventsWaiting = false;
      const subscriptions = new Map(this.opts.hooks.map((h) => [h.name, h.events]));
      // A short batch is the last one: there is nothing more to read until the next poke.
      while ((await fanOut(this.opts.db, subscriptions)) === FAN_OUT_BATCH && !this.stopping.signal.aborted);
    }
    for (const hook of this.opts.hooks) {
      const free = hook.concurrency - (this.active.get(hook.name) ?? 0);
      if (free <= 0 || this.stopping.signal.aborted) continue;
      const claimed = await claimDeliveries(this.opts.db, hook.name, free, this.leaseMs());
      for (const event of claimed) this.launch(hook, event);
    }
  }

  private leaseMs(): number {
    return this.opts.leaseMs ?? DEFAULT_HOOK_LEASE_MS;
  }

  /**
   * Renews the delivery's lease while its handler runs. A renewal that fails (the database
   * unreachable) is tried again at the next tick; if the lease runs out meanwhile another
   * coordinator may deliver the event too, which at least once allows.
   */
  private keepLeased(hook: Hook, event: HookEvent, log: HookContext['log']): () => void {
    const timer = setInterval(() => {
      renewDelivery(this.opts.db, hook.name, event.id, this.leaseMs()).catch((err: unknown) => log.warn({ err }, 'could not renew the delivery\'s lease'));
    }, Math.max(1, Math.floor(this.leaseMs() / 3)));
    timer.unref();
    return () => clearInterval(timer);
  }

  private launch(hook: Hook, event: HookEvent): void {
    this.active.set(hook.name, (this.active.get(hook.name) ?? 0) + 1);
    const run = this.deliver(hook, event).finally(() => {
      this.active.set(hook.name, this.active.get(hook.name)! - 1);
      this.running.delete(run);
      this.slotFree();
    });
    this.running.add(run);
  }

  private async deliver(hook: Hook, event: HookEvent): Promise<void> {
    const log = this.opts.log.child({ hook: hook.name, eventId: event.id, eventType: event.type, buildId: event.buildId ?? undefined, attempt: event.attempt });
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(hook.timeoutMs)]);
    const release = this.keepLeased(hook, event, log);
    try {
      try {
        await abortable(hook.handle(event, { log, signal }), signal);
      } finally {
        release();
      }
      await deliveryDone(this.opts.db, hook.name, event.id);
      log.debug('hook handled the event');
      this.tell({ hook: hook.name, eventId: event.id, eventType: event.type, attempt: event.attempt, outcome: 'done' });
    } catch (err) {
      if (this.stopping.signal.aborted) {
        log.info('stopping: the event will be delivered again');
        this.tell({ hook: hook.name, eventId: event.id, eventType: event.type, attempt: event.attempt, outcome: 'interrupted' });
        return; // its lease runs out, and it is claimed again
      }
      const message = err instanceof Error ? err.message : String(err);
      const park = event.attempt >= hook.maxAttempts;
      await deliveryFailed(this.opts.db, hook.name, event.id, message, park ? { park: true } : { park: false, retryInMs: retryDelayMs(event.attempt) })
        .catch((dbErr: unknown) => log.error({ err: dbErr }, 'could not record the hook failure'));
      if (park) log.error({ err: message }, `hook failed ${event.attempt} times; the event is parked until an operator retries it`);
      else log.warn({ err: message, retryInMs: retryDelayMs(event.attempt) }, 'hook failed; it will be tried again');
      this.tell({ hook: hook.name, eventId: event.id, eventType: event.type, attempt: event.attempt, outcome: park ? 'parked' : 'retry', error: message });
    }
  }
}

/** The handler's promise, or the signal's reason as soon as it aborts (a hook that ignores its signal still times out). */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof Error && signal.reason.name === 'TimeoutError' ? new Error('the hook ran past its time limit') : (signal.reason as Error));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
