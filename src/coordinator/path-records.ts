// Putting received NARs into the cache: each file is renamed into place and its store
// path recorded while the cache lock is held (cache-lock.ts), so that garbage collection
// never sees one without the other. Uploads that finish together share the transaction
// (group commit, batcher.ts): a farm's stream of small outputs costs a few round trips a
// second instead of four per output. Each upload still hears only of its own outcome: a
// file that could not be renamed fails its own upload, not the others'.
import { Batcher, batcherPer } from '../batcher.js';
import type { Database } from '../db/connection.js';
import { storePaths } from '../db/schema.js';
import { holdCacheShared } from '../substitutes/cache-lock.js';

/** A row of store_paths, as an upload records it. */
export type StorePathRow = typeof storePaths.$inferInsert;

export interface PathRecord {
  /** Moves the checked file into place under its final name. */
  commitFile(): Promise<void>;
  row: StorePathRow;
}

type Outcome = { ok: true } | { ok: false; err: unknown };

/** Renames the file into place and records the path; resolves once the record is committed. */
export async function recordPath(db: Database, record: PathRecord): Promise<void> {
  const outcome = await records(db).call(record);
  if (!outcome.ok) throw outcome.err;
}

const records = batcherPer(
  (db: Database) =>
    new Batcher(async (batch: PathRecord[]): Promise<Outcome[]> =>
      db.transaction(async (tx) => {
        // From the renames to the rows' commit, garbage collection waits.
        await holdCacheShared(tx);
        const renamed = await Promise.allSettled(batch.map((r) => r.commitFile()));
        const rows = batch.filter((_, i) => renamed[i]!.status === 'fulfilled').map((r) => r.row);
        if (rows.length > 0) await tx.insert(storePaths).values(rows).onConflictDoNothing();
        return renamed.map((r) => (r.status === 'fulfilled' ? { ok: true } : { ok: false, err: r.reason as unknown }));
      }),
    ),
);
