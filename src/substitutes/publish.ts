// The built-in publish hook: on build-success, each output (and each source in its
// closure, which no build's success would publish) gets the NAR compressions the cache
// keeps besides the uploaded LZ4, and its narinfo text, rendered once from the signatures
// made when the path was committed. Until it has run, the cache renders narinfos on
// request from those signatures, so publishing late (or never, when an operator replaces
// this hook) loses nothing but the other compressions. Run at least once: every step is idempotent.
import { eq, sql } from 'drizzle-orm';
import { rm } from 'node:fs/promises';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { narFiles, storePaths } from '../db/schema.js';
import type { Hook, HookContext } from '../hooks/hook.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { holdCacheShared } from '../db/cache-lock.js';
import type { CacheKeys } from './cache-keys.js';
import { makeCompressedNar, type CompressedNar } from './compressed-nar.js';
import { UPLOADED, type Compression } from './compressions.js';
import { contentAddressOf } from './content-addresses.js';
import { currentSignatures, narInfoText, signNarInfoFields } from './narinfo-text.js';

export const PUBLISH_HOOK = 'publish';

/** The hook's limits, which the configuration may change (builtinHooks.publish). */
export interface PublishLimits {
  concurrency: number;
  maxAttempts: number;
  timeoutMs: number;
}

/** Two at once; long enough for a large NAR at a high zstd level. */
export const DEFAULT_PUBLISH_LIMITS: PublishLimits = { concurrency: 2, maxAttempts: 5, timeoutMs: 30 * 60_000 };

export interface PublishDeps {
  db: Database;
  storage: NarStorage;
  keys: CacheKeys;
  compressions: Compression[];
}

export function publishHook(deps: PublishDeps, limits: PublishLimits = DEFAULT_PUBLISH_LIMITS): Hook {
  return {
    name: PUBLISH_HOOK,
    events: ['build-success'],
    ...limits,
    async handle(event, ctx) {
      if (!event.buildId) return;
      for (const path of await pathsToPublish(deps.db, event.buildId)) {
        const outcome = await publishPath(deps, path, ctx);
        ctx.log.debug({ path, outcome }, 'published');
      }
    },
  };
}

/**
 * The build's stored outputs, and the stored paths in their closure that no build made
 * (sources). Each path's row is read once, as the walk reaches it: joining the closure to
 * store_paths afterwards made the planner, which cannot tell a closure's size, hash every
 * stored path for the one or two an output usually has.
 */
async function pathsToPublish(db: Database, buildId: string): Promise<string[]> {
  const rows = rowsOf<{ path: string }>(
    await db.execute(sql`
      with recursive outputs as (
        select o.path from builds b join derivation_outputs o on o.derivation_path = b.derivation_path where b.id = ${buildId}
      ),
      closure(path, refs, build_id) as (
        select s.path, s.references, s.build_id from outputs o join store_paths s on s.path = o.path
        union
        select s.path, s.references, s.build_id from closure c cross join lateral unnest(c.refs) as r(ref) join store_paths s on s.path = r.ref
      )
      select path from closure
      where build_id is null or path in (select path from outputs)
      order by path`),
  );
  return rows.map((r) => r.path);
}

/**
 * Makes what a stored path lacks of the kept compressions, records the new files and
 * its narinfo. 'gone' when the path left the cache (or changed) meanwhile: nothing is
 * recorded then, and the files made become orphans that garbage collection removes.
 */
export async function publishPath(deps: PublishDeps, path: string, ctx: Pick<HookContext, 'signal'>): Promise<'published' | 'current' | 'gone'> {
  const [stored] = await deps.db.select().from(storePaths).where(eq(storePaths.path, path));
  if (!stored) return 'gone';
  const have = await deps.db.select({ compression: narFiles.compression }).from(narFiles).where(eq(narFiles.path, path));
  const wanted = deps.compressions.filter((c) => c.name !== UPLOADED && !have.some((h) => h.compression === c.name));
  if (wanted.length === 0 && stored.narinfo !== null && stored.narinfoSigner === deps.keys.fingerprint) return 'current';
  const made: CompressedNar[] = [];
  try {
    for (const compression of wanted) made.push(await makeCompressedNar(deps.storage, stored, compression, ctx.signal));
    const recorded = await deps.db.transaction(async (tx) => {
      // Under the lock, garbage collection cannot remove the path between this check and the insert.
      await holdCacheShared(tx);
      const [now] = await tx.select().from(storePaths).where(eq(storePaths.path, path));
      if (!now || now.narHash !== stored.narHash || now.fileName !== stored.fileName) return false;
      for (const m of made) {
        await deps.storage.adopt(m.temporary, m.file.fileName);
        await tx.insert(narFiles).values({ path, ...m.file }).onConflictDoNothing();
      }
      const files = await tx.select().from(narFiles).where(eq(narFiles.path, path));
      // Signed when committed; signed here only if the keys changed since and the
      // background signer has not reached it yet (a hook, never a request).
      const signatures = currentSignatures(now, deps.keys) ?? signNarInfoFields(now, deps.keys);
      await tx
        .update(storePaths)
        .set({ ...signatures, narinfo: narInfoText({ ...now, ...signatures }, files, await contentAddressOf(tx, path)), narinfoSigner: signatures.signatureKey })
        .where(eq(storePaths.path, path));
      return true;
    });
    return recorded ? 'published' : 'gone';
  } finally {
    // Those not adopted (a failure, or the path gone); an adopted one is no longer there.
    await Promise.all(made.map((m) => rm(m.temporary, { force: true })));
  }
}
