// Putting received NARs into the cache: each file is renamed into place and its store
// path recorded while the cache lock is held (db/cache-lock.ts), so that garbage collection
// never sees one without the other. Uploads that finish together share the transaction
// (group commit, batcher.ts): a farm's stream of small outputs costs a few round trips a
// second instead of four per output. Each upload still hears only of its own outcome: a
// file that could not be renamed fails its own upload, not the others'.
import { Batcher, batcherPer } from '../batcher.js';
import type { Database } from '../db/connection.js';
import { sql } from 'drizzle-orm';
import { pendingOutputs, storePaths } from '../db/schema.js';
import { holdCacheShared } from '../db/cache-lock.js';

/** A row of store_paths, as an upload records it. */
export type StorePathRow = typeof storePaths.$inferInsert;

export interface PathRecord {
  /** Moves the checked file into place under its final name. */
  commitFile(): Promise<void>;
  row: StorePathRow;
  /**
   * A build's output: recorded as pending for that attempt (pending_outputs), served once
   * the attempt's success is accepted; a later upload in the same attempt replaces it.
   */
  pending?: { buildId: string; attempt: number; name: string };
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
        const done = batch.filter((_, i) => renamed[i]!.status === 'fulfilled');
        const rows = done.filter((r) => !r.pending).map((r) => r.row);
        if (rows.length > 0) await tx.insert(storePaths).values(rows).onConflictDoNothing();
        // One row per output (a statement may not update a row twice): the last upload's.
        const pending = [...new Map(done.flatMap((r) => (r.pending ? [[`${r.pending.buildId} ${r.pending.attempt} ${r.pending.name}`, pendingRow(r.row, r.pending)] as const] : []))).values()];
        if (pending.length > 0) {
          await tx
            .insert(pendingOutputs)
            .values(pending)
            .onConflictDoUpdate({ target: [pendingOutputs.buildId, pendingOutputs.attempt, pendingOutputs.name], set: replaced });
        }
        return renamed.map((r) => (r.status === 'fulfilled' ? { ok: true } : { ok: false, err: r.reason as unknown }));
      }),
    ),
);

function pendingRow(row: StorePathRow, pending: { buildId: string; attempt: number; name: string }): typeof pendingOutputs.$inferInsert {
  const { narinfo: _n, narinfoSigner: _s, buildId: _b, createdAt: _c, ...fields } = row;
  return { ...fields, ...pending };
}

/** An upload again in the same attempt (two in one batch: the later) replaces what it had pending. */
const replaced = Object.fromEntries(
  ['path', 'hash_part', 'nar_hash', 'nar_size', 'references', 'deriver', 'file_name', 'compression', 'file_hash', 'file_size'].map((c) => [
    c.replace(/_([a-z])/g, (_, l: string) => l.toUpperCase()),
    sql.raw(`excluded.${c}`),
  ]),
);
