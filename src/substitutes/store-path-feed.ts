// Keeps a coordinator's in-memory view of the cache (HashPartIndex, and the narinfo texts
// the cache routes remember) current with store_paths, whoever changes it: this process,
// another replica, an operator's SQL. Triggers on store_paths write every change to
// store_path_changes in the writer's transaction and NOTIFY at commit; this replays the
// log from a cursor, on each notification and once a second in case one was lost.
//
// Sequence numbers are taken before commit, so on PostgreSQL a later number can commit
// first: the cursor advances only over numbers seen without a hole, and what lies past a
// hole is applied once and remembered. A hole still open after HOLE_MS is a transaction
// that rolled back (or one that took longer; a restart reloads everything). Changes of
// one path are ordered by its row's locks, so applying them in number order is right.
import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import type { Logger } from '../logger.js';
import { HashPartIndex } from './hash-part-index.js';

export const STORE_PATHS_CHANNEL = 'kiln_store_paths';
const HOLE_MS = 30_000;
const POLL_MS = 1_000;
const PAGE = 10_000;
const LOAD_PAGE = 50_000;
/** The log is pruned past this; a replica that did not read it for half as long reloads. */
const KEEP_MS = 60 * 60_000;
const PRUNE_EVERY_MS = 10 * 60_000;

export class StorePathFeed {
  index = HashPartIndex.empty();
  /** Bumped by every change applied: a text read before a change is not remembered after it. */
  version = 0;
  private cursor = 0;
  private readonly beyond = new Set<number>();
  private hole: { seq: number; sinceMs: number } | undefined;
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private lastPollMs = 0;
  private lastPruneMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  /** A catch-up a notification asked for, while it runs: a miss waits for it. */
  waking: Promise<void> | undefined;

  constructor(
    private readonly database: DatabaseHandle,
    private readonly log: Logger,
    private readonly onChange: (hashPart: string) => void,
  ) {}

  async start(): Promise<void> {
    this.unlisten = await this.database.listen(STORE_PATHS_CHANNEL, () => {
      const wake = this.catchUp().catch((err: unknown) => this.log.warn({ err }, 'cache index: catching up failed'));
      this.waking = wake;
      void wake.finally(() => {
        if (this.waking === wake) this.waking = undefined;
      });
    });
    await this.reload();
    this.timer = setInterval(() => void this.catchUp().catch((err: unknown) => this.log.warn({ err }, 'cache index: catching up failed')), POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.unlisten?.().catch(() => undefined);
    await this.running?.catch(() => undefined);
  }

  /** Resolves once every change committed before the call is applied. */
  catchUp(): Promise<void> {
    if (!this.running) return this.run();
    // One in flight may have read before the caller's commit: one more after it.
    this.queued ??= this.running.catch(() => undefined).then(() => {
      this.queued = undefined;
      return this.run();
    });
    return this.queued;
  }

  private run(): Promise<void> {
    const p = this.poll().finally(() => {
      if (this.running === p) this.running = undefined;
    });
    this.running = p;
    return p;
  }

  /** Every hash part, from a cursor a little in the past (replaying past it is harmless). */
  private async reload(): Promise<void> {
    const started = Date.now();
    const { db } = this.database;
    const [from] = rowsOf<{ seq: string | number | null }>(
      await db.execute(sql`select max(seq) as seq from store_path_changes where at < clock_timestamp() - ${`${HOLE_MS / 1000} seconds`}::interval`),
    );
    const hashParts: string[] = [];
    let last = '';
    for (;;) {
      const rows = rowsOf<{ path: string; hash_part: string }>(
        await db.execute(sql`select path, hash_part from store_paths where path > ${last} order by path limit ${LOAD_PAGE}`),
      );
      for (const r of rows) hashParts.push(r.hash_part);
      if (rows.length < LOAD_PAGE) break;
      last = rows[rows.length - 1]!.path;
    }
    this.index = HashPartIndex.from(hashParts);
    this.cursor = Number(from?.seq ?? 0);
    this.beyond.clear();
    this.hole = undefined;
    this.version++;
    await this.poll();
    this.log.info({ paths: this.index.size, bytes: this.index.bytes, ms: Date.now() - started }, 'cache index loaded');
  }

  private async poll(): Promise<void> {
    const now = Date.now();
    if (this.lastPollMs > 0 && now - this.lastPollMs > KEEP_MS / 2) return this.reload();
    const { db } = this.database;
    let after = this.cursor;
    for (;;) {
      const rows = rowsOf<{ seq: string | number; hash_part: string; present: boolean }>(
        await db.execute(sql`select seq, hash_part, present from store_path_changes where seq > ${after} order by seq limit ${PAGE}`),
      );
      for (const r of rows) {
        const seq = Number(r.seq);
        if (this.beyond.has(seq)) continue;
        if (r.present) this.index.add(r.hash_part);
        else this.index.remove(r.hash_part);
        this.version++;
        this.onChange(r.hash_part);
        this.beyond.add(seq);
      }
      if (rows.length < PAGE) break;
      after = Number(rows[rows.length - 1]!.seq);
    }
    this.advance(now);
    this.lastPollMs = now;
    if (now - this.lastPruneMs > PRUNE_EVERY_MS) {
      this.lastPruneMs = now;
      await db.execute(sql`delete from store_path_changes where at < clock_timestamp() - ${`${KEEP_MS / 1000} seconds`}::interval`);
    }
  }

  private advance(now: number): void {
    for (;;) {
      while (this.beyond.delete(this.cursor + 1)) this.cursor++;
      if (this.beyond.size === 0) {
        this.hole = undefined;
        return;
      }
      const seq = this.cursor + 1;
      if (this.hole?.seq !== seq) {
        this.hole = { seq, sinceMs: now };
        return;
      }
      if (now - this.hole.sinceMs < HOLE_MS) return;
      // Rolled back, most likely: on to the first change seen past it.
      let first = Infinity;
      for (const b of this.beyond) if (b < first) first = b;
      this.cursor = first - 1;
      this.hole = undefined;
    }
  }
}
