// New builds whose every output kiln's cache holds already: nothing for an agent to do
// (its store may hold the outputs too, alive, and it could not delete them to build
// again), so they succeed at submission, with a build-success event as any success has.
import { sql } from 'drizzle-orm';
import { rowsOf } from '../db/rows.js';
import type { Queryable } from './build-outputs.js';

export const CACHED_MESSAGE = 'every output was in the cache already: nothing was built';

/** A build's success reason (Build.success_reason) when it succeeded here. */
export const CACHED = 'cached';

/**
 * Why a build succeeded, when no attempt says it: a success with no attempt is one made
 * here, since every other success is an agent's report on an attempt (report-statements.ts).
 */
export function successReasonOf(build: { state: string; attempt: number }): typeof CACHED | null {
  return build.state === 'succeeded' && build.attempt === 0 ? CACHED : null;
}

/**
 * Of the scheduled builds `buildIds`, those whose derivation's outputs are all in
 * store_paths succeed now (attempt 0, no agent), their waits dropped. Returns their ids.
 */
export async function succeedCached(tx: Queryable, buildIds: string[]): Promise<string[]> {
  if (buildIds.length === 0) return [];
  const rows = rowsOf<{ id: string }>(
    await tx.execute(sql`
      with cached as (
        select b.id from builds b
        where b.id = any(${sql.param(buildIds)}::uuid[]) and b.state = 'scheduled'
          and exists (select 1 from derivation_outputs o where o.derivation_path = b.derivation_path)
          and not exists (
            select 1 from derivation_outputs o
            where o.derivation_path = b.derivation_path
              and not exists (select 1 from store_paths s where s.path = o.path))
        order by b.id for update of b),
      waits as (delete from build_waits w using cached c where w.build_id = c.id),
      done as (
        update builds b set state = 'succeeded', waiting = 0, updated_at = now(), ended_at = now()
        from cached c where b.id = c.id
        returning b.id, b.attempt),
      event as (
        insert into events (type, build_id, payload)
        select 'build-success', d.id, jsonb_build_object('attempt', d.attempt, 'outcome', 'success', 'message', ${CACHED_MESSAGE}::text, 'cached', true)
        from done d)
      select id from done`),
  );
  return rows.map((r) => r.id);
}
