// Events that no state change of the database carries (an agent's stream came or went):
// written on their own, and tried again with backoff until they are written, so that a
// database outage delays them but loses none. At stop, what is still unwritten is given a
// bounded last while, then logged whole (the log is then its only record).
import { Backoff, delay } from '../backoff.js';
import type { Database } from '../db/connection.js';
import { events } from '../db/schema.js';
import { isLastingFailure } from '../db/transient.js';
import type { Logger } from '../logger.js';

export type StandaloneEvent = Pick<typeof events.$inferInsert, 'type' | 'agentId' | 'buildId' | 'payload'>;

/** How long stop() waits for events still unwritten before it gives up on them. */
const STOP_GRACE_MS = 5_000;

export class StandaloneEvents {
  private readonly pending = new Set<Promise<void>>();
  private readonly stopping = new AbortController();

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
    /** Called once an event is written (e.g. to wake the hooks). */
    private readonly written: (event: StandaloneEvent) => void = () => {},
    private readonly backoff = { initialMs: 200, maxMs: 5_000 },
  ) {}

  /** Writes the event, now or as soon as the database takes it. */
  record(event: StandaloneEvent): void {
    const writing = this.write(event).finally(() => this.pending.delete(writing));
    this.pending.add(writing);
  }

  /** Events not written yet. */
  unwritten(): number {
    return this.pending.size;
  }

  private async write(event: StandaloneEvent): Promise<void> {
    const backoff = new Backoff(this.backoff);
    for (let tries = 1; ; tries++) {
      try {
        await this.db.insert(events).values(event);
        if (tries > 1) this.log.info({ event: event.type, agentId: event.agentId, tries }, 'event written after the database came back');
        this.written(event);
        return;
      } catch (err) {
        if (isLastingFailure(err) || this.stopping.signal.aborted) {
          this.log.error({ err, event }, 'an event could not be written; this log line is its only record');
          return;
        }
        if (tries === 1) this.log.warn({ err, event: event.type, agentId: event.agentId }, 'could not write an event; trying again until the database takes it');
        await delay(backoff.next(), this.stopping.signal).catch(() => undefined);
      }
    }
  }

  /** Waits a bounded while for the events still unwritten, then gives up on them (logging each). */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (this.pending.size > 0) {
      const grace = setTimeout(() => this.stopping.abort(new Error('the coordinator is stopping')), graceMs);
      while (this.pending.size > 0) await Promise.all([...this.pending]);
      clearTimeout(grace);
    }
    this.stopping.abort(new Error('the coordinator is stopping'));
  }
}
