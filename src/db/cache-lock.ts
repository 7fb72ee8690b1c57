// The one lock between garbage collection and whatever puts paths into the cache. NAR
// file names are content hashes, so a path removed by gc may come back at once under
// the same file name; without the lock gc could unlink a file that a writer has just
// renamed into place and is about to record. Writers hold the lock shared, in the
// transaction that puts the file into nar/ and inserts its row (and submissions and
// retries while they count which inputs are present); gc holds it exclusively while
// it deletes rows and while it unlinks files. A transaction-scoped PostgreSQL advisory
// lock, so it holds across replicas and is let go when the transaction ends, whatever
// happens to the process.
import { sql } from 'drizzle-orm';
import type { Database } from './connection.js';

type Executor = Pick<Database, 'execute'>;

/** An arbitrary constant: the key kiln's cache lock is known by (advisory locks share one key space). */
const CACHE_LOCK_KEY = 7_469_012_345_001;

/** Within a transaction: no garbage collection until it ends. Taken again in the same transaction, it is held once more, harmlessly. */
export async function holdCacheShared(tx: Executor): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock_shared(${CACHE_LOCK_KEY}::bigint)`);
}

/** Within a transaction: nothing enters the cache, or counts on what is in it, until it ends. */
export async function holdCacheExclusive(tx: Executor): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${CACHE_LOCK_KEY}::bigint)`);
}
