// `kiln cache gc`: removes from the cache every stored path no retention rule keeps, and
// its NAR files in every compression. Rows first, then files, so that a narinfo never
// points at a missing NAR: a crash in between leaves files no row names, which the next
// collection removes (the sweep of nar/). Both steps hold the cache lock exclusively
// (db/cache-lock.ts), so no upload, publish or submission interleaves with them.
import type { Database } from '../db/connection.js';
import type { Logger } from '../logger.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { holdCacheExclusive } from '../db/cache-lock.js';
import { deleteStalePending, deleteUnkept, endedAttempts, findUnkept, unreferencedFiles } from './garbage-queries.js';
import type { RetentionRules } from './retention.js';

export interface GarbageOptions {
  db: Database;
  storage: NarStorage;
  rules: RetentionRules;
  dryRun: boolean;
  log: Logger;
  now?: Date;
  /**
   * Called once the rows are gone and before any file is: this process's in-memory index
   * drops the paths here (StorePathFeed.catchUp), so it never serves one whose files are
   * gone. Other replicas check the files of a remembered narinfo before serving it.
   */
  beforeUnlink?: () => Promise<void>;
}

export interface GarbageReport {
  /** Store paths removed (or that would be, in a dry run), sorted. */
  paths: string[];
  /** NAR files removed: those of the removed paths, and files no path names (orphans). */
  files: number;
  orphanFiles: number;
  /** Bytes those files held. */
  bytes: number;
}

/**
 * A file under nar/ that no row names is left alone this long after it was written: it
 * may be a writer's that has not recorded it yet (one that does not take the cache lock,
 * such as a replica of an older version during an upgrade).
 */
export const ORPHAN_GRACE_MS = 60 * 60_000;
/** Files checked and unlinked per transaction, so that other work is held up only briefly. */
const UNLINK_BATCH = 500;

export async function collectGarbage(opts: GarbageOptions): Promise<GarbageReport> {
  const now = opts.now ?? new Date();
  if (opts.dryRun) return dryRun(opts, now);
  const { removed, stale } = await opts.db.transaction(async (tx) => {
    await holdCacheExclusive(tx);
    return { removed: await deleteUnkept(tx, opts.rules, now), stale: await deleteStalePending(tx) };
  });
  await opts.beforeUnlink?.();
  const sizes = new Map([...removed.flatMap((p) => p.files), ...stale].map((f) => [f.fileName, f.fileSize] as const));
  const freed = await unlinkUnreferenced(opts, [...sizes.keys()], sizes);
  const orphans = await sweepOrphans(opts, now, new Set(sizes.keys()), false);
  await sweepEndedStaging(opts);
  const report = { paths: removed.map((p) => p.path), files: freed.count + orphans.count, orphanFiles: orphans.count, bytes: freed.bytes + orphans.bytes };
  opts.log.info({ paths: report.paths.length, files: report.files, orphanFiles: report.orphanFiles, bytes: report.bytes }, 'garbage collected');
  return report;
}

async function dryRun(opts: GarbageOptions, now: Date): Promise<GarbageReport> {
  const { paths, freedFiles } = await findUnkept(opts.db, opts.rules, now);
  let bytes = 0;
  const counted = new Set<string>();
  for (const p of paths) {
    for (const f of p.files) {
      if (!freedFiles.has(f.fileName) || counted.has(f.fileName)) continue;
      counted.add(f.fileName);
      bytes += f.fileSize;
    }
  }
  const orphans = await sweepOrphans(opts, now, counted, true);
  return { paths: paths.map((p) => p.path), files: counted.size + orphans.count, orphanFiles: orphans.count, bytes: bytes + orphans.bytes };
}

/** Unlinks those of `fileNames` that no row names, in batches under the lock. */
async function unlinkUnreferenced(opts: GarbageOptions, fileNames: string[], sizes: Map<string, number>): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for (let i = 0; i < fileNames.length; i += UNLINK_BATCH) {
    await opts.db.transaction(async (tx) => {
      await holdCacheExclusive(tx);
      for (const name of await unreferencedFiles(tx, fileNames.slice(i, i + UNLINK_BATCH))) {
        // Unlinked while the lock is held: no writer can be putting this name back meanwhile.
        await opts.storage.remove(name);
        count++;
        bytes += sizes.get(name) ?? 0;
      }
    });
  }
  return { count, bytes };
}

/** Files under nar/ no row names, older than the grace period, other than `skip`: removed, or only counted in a dry run. */
async function sweepOrphans(opts: GarbageOptions, now: Date, skip: Set<string>, dryRun: boolean): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  let batch: { fileName: string; size: number }[] = [];
  const flush = async () => {
    const sizes = new Map(batch.map((f) => [f.fileName, f.size]));
    batch = [];
    if (dryRun) {
      for (const name of await unreferencedFiles(opts.db, [...sizes.keys()])) {
        count++;
        bytes += sizes.get(name)!;
      }
      return;
    }
    const done = await unlinkUnreferenced(opts, [...sizes.keys()], sizes);
    count += done.count;
    bytes += done.bytes;
  };
  for await (const f of opts.storage.files()) {
    if (skip.has(f.fileName) || now.getTime() - f.modifiedMs < ORPHAN_GRACE_MS) continue;
    batch.push(f);
    if (batch.length >= UNLINK_BATCH) await flush();
  }
  if (batch.length > 0) await flush();
  return { count, bytes };
}

/** A build output's staging key (upload-receiver's stagingKey): `<build id>.<attempt>.<output>`. */
const OUTPUT_STAGING_KEY = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(\d{1,9})\./;

/**
 * Removes the staged (partly uploaded) outputs of attempts that are over: an agent lost
 * mid-upload leaves them, and no later attempt resumes another's bytes.
 */
async function sweepEndedStaging(opts: GarbageOptions): Promise<number> {
  const staged = (await opts.storage.stagedKeys()).flatMap((key) => {
    const m = OUTPUT_STAGING_KEY.exec(key);
    return m ? [{ key, buildId: m[1]!, attempt: Number(m[2]) }] : [];
  });
  const ended = new Set((await endedAttempts(opts.db, staged)).map((a) => `${a.buildId}.${a.attempt}`));
  let removed = 0;
  for (const s of staged) {
    if (ended.has(`${s.buildId}.${s.attempt}`) && (await opts.storage.discardStaged(s.key))) removed++;
  }
  if (removed > 0) opts.log.info({ staged: removed }, 'removed staged uploads of attempts that are over');
  return removed;
}
