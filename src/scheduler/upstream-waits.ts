// Readiness with upstream caches: an input path counts as available when an upstream
// used for outputs has a fresh 'hit' for it (upstream_lookups, written by the lookups in
// cache/upstreams), and a missing-input build for it is submitted only once it is
// decided that no upstream has it. These are the SQL pieces availability.ts and
// new-builds.ts use, and the statements the lookups' results go through.
import { sql, type SQL } from 'drizzle-orm';
import { rowsOf } from '../db/rows.js';
import type { Queryable } from './build-outputs.js';

/** True when an upstream used for outputs has a fresh, trusted narinfo for `path`. */
export function upstreamHas(path: SQL): SQL {
  return sql`exists (
    select 1 from upstream_lookups l join upstreams u on u.url = l.upstream
    where u.for_outputs and l.path = ${path} and l.outcome = 'hit' and l.expires_at > now())`;
}

/** True when `path` is in kiln's cache or an upstream has it. */
export function pathAvailable(path: SQL): SQL {
  return sql`(exists (select 1 from store_paths s where s.path = ${path}) or ${upstreamHas(path)})`;
}

/** True when the derivation that makes `path` says allowSubstitutes = false. */
function neverSubstituted(path: SQL): SQL {
  return sql`exists (
    select 1 from derivation_outputs o join derivations d on d.path = o.derivation_path
    where o.path = ${path} and not d.allow_substitutes)`;
}

/**
 * True when it is decided that no upstream has `path`: none is configured for outputs,
 * each said 'miss' recently (an 'error' decides nothing), or the path is never
 * substituted. Only then is a build submitted for it.
 */
export function noUpstreamHas(path: SQL): SQL {
  return sql`(not ${upstreamHas(path)} and (${neverSubstituted(path)} or not exists (
    select 1 from upstreams u where u.for_outputs and not exists (
      select 1 from upstream_lookups l
      where l.upstream = u.url and l.path = ${path} and l.outcome = 'miss' and l.expires_at > now()))))`;
}

/**
 * Paths builds wait on that upstreams used for outputs should be asked about now, each
 * with those upstreams (no fresh answer from them, no hit elsewhere) in priority order;
 * at most `limit` paths.
 */
export async function pathsToLookUp(db: Queryable, limit: number): Promise<{ path: string; ask: string[] }[]> {
  return rowsOf<{ path: string; ask: string[] }>(
    await db.execute(sql`
      select w.path, array_agg(u.url order by u.position) as ask
      from (select distinct path from build_waits) w
      join upstreams u on u.for_outputs and not exists (
        select 1 from upstream_lookups l where l.upstream = u.url and l.path = w.path and l.expires_at > now())
      where not exists (select 1 from store_paths s where s.path = w.path)
        and not ${upstreamHas(sql`w.path`)}
        and not ${neverSubstituted(sql`w.path`)}
      group by w.path
      order by w.path
      limit ${limit}`),
  );
}

/** Marks the waits of `waits` (a condition on build_waits w) that wait for an upstream's answer before a build is submitted. */
export async function deferUndecided(tx: Queryable, waits: SQL): Promise<void> {
  await tx.execute(sql`
    update build_waits w set submit_on_miss = true
    where ${waits} and not w.submit_on_miss and not ${noUpstreamHas(sql`w.path`)}`);
}

/** Clears the deferral of waits on `paths` now decided missing; gives those waits' build ids. */
export async function takeDecidedDeferrals(tx: Queryable, paths: string[]): Promise<{ buildId: string; path: string }[]> {
  const rows = rowsOf<{ build_id: string; path: string }>(
    await tx.execute(sql`
      update build_waits w set submit_on_miss = false
      where w.path = any(${sql.param(paths)}::text[]) and w.submit_on_miss and ${noUpstreamHas(sql`w.path`)}
      returning w.build_id, w.path`),
  );
  return rows.map((r) => ({ buildId: r.build_id, path: r.path }));
}

/**
 * An agent could not get `paths` although an upstream had them: its word is not taken
 * again for a while (the negative lifetime of its lookups), so the waits stay and builds
 * for the paths follow.
 */
export async function distrustUpstreamHits(tx: Queryable, paths: string[], negativeTtlMs: number): Promise<void> {
  if (paths.length === 0) return;
  await tx.execute(sql`
    update upstream_lookups set outcome = 'miss', reason = 'an agent could not substitute it',
      checked_at = now(), expires_at = now() + ${negativeTtlMs} * interval '1 millisecond'
    where path = any(${sql.param(paths)}::text[]) and outcome = 'hit'`);
}
