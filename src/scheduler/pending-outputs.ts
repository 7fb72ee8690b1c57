// An attempt's outputs commit together: each upload records its output as pending for
// the attempt (pending_outputs); the statement that accepts the attempt's success makes
// them store_paths rows (served, and released to the builds waiting for them) and clears
// them; an attempt that ends otherwise only drops its pending rows, so nothing it uploaded
// is ever served, and the next attempt's outputs are judged on their own. A path the cache
// serves already (another build made it) keeps its row: on conflict nothing is replaced.
// The NAR files stay under nar/ by their hash; garbage collection removes those no row names.
import { sql, type SQL } from 'drizzle-orm';
import type { Queryable } from './build-outputs.js';

/**
 * Statement (a CTE body) that serves the pending outputs of the builds in `done` (a
 * relation of id, attempt: a CTE's name, or a parenthesized select).
 */
export function servePendingOf(done: SQL): SQL {
  return sql`
    insert into store_paths (path, hash_part, nar_hash, nar_size, "references", deriver, file_name, compression, file_hash, file_size, build_id, nix_signature, guix_signature, signature_key)
    select p.path, p.hash_part, p.nar_hash, p.nar_size, p."references", p.deriver, p.file_name, p.compression, p.file_hash, p.file_size, p.build_id,
      p.nix_signature, p.guix_signature, p.signature_key
    from pending_outputs p join ${done} d on p.build_id = d.id and p.attempt = d.attempt
    on conflict do nothing`;
}

/** Statement (a CTE body) that clears every pending output of the builds in `done` (a relation with id). */
export function clearPendingOf(done: SQL): SQL {
  return sql`delete from pending_outputs p using ${done} d where p.build_id = d.id`;
}

/** The build's attempt succeeded: its pending outputs are served, in the caller's transaction. */
export async function servePending(tx: Queryable, buildId: string, attempt: number): Promise<void> {
  const done = sql`(select ${buildId}::uuid as id, ${attempt}::int as attempt)`;
  await tx.execute(sql`with served as (${servePendingOf(done)}) ${clearPendingOf(done)}`);
}

/** The build's attempt ended otherwise (or the build left its agent): nothing it uploaded will be served. */
export async function dropPending(tx: Queryable, buildId: string): Promise<void> {
  await tx.execute(sql`delete from pending_outputs where build_id = ${buildId}::uuid`);
}
