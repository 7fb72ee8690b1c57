// Builds that cannot run because an input will never come: a path they wait for that is
// not in the cache, whose producing derivation has builds and all of them ended in a final
// failure (failed and not retried, or canceled). Such a build fails too, `failed` with
// reason 'dependency-failed' naming the input and its failed build (as Hydra does), with
// a build-failure event whose payload says so, and so on up the graph. It comes back to
// the queue (a build-retried event, reason 'dependency-available') when the input can come
// after all: its producer is retried or submitted again, or the path arrives.
//
// A failed build keeps its waits (build_waits), so an arrival still finds it. Each step is
// one statement over a set of builds, locked in id order like every statement that changes
// many builds; the walk up the graph is a statement per level inside the caller's
// transaction. Two replicas racing (an input failing as a new build of it is submitted)
// can leave a build failed that could run; the input's arrival revives it.
import { sql, type SQL } from 'drizzle-orm';
import { rowsOf } from '../db/rows.js';
import type { Queryable } from './build-outputs.js';

export const DEPENDENCY_FAILED = 'dependency-failed';

/** A deep graph ends, but a cycle in bad data must not loop for ever. */
const MAX_LEVELS = 10_000;

/**
 * True for a wait (`w`, a build_waits row) on a path that will never come: not in the
 * cache, made by a derivation that has builds, none of which is unfinished or succeeded.
 */
function deadInput(w: string): SQL {
  const path = sql.raw(`${w}.path`);
  return sql`(
    not exists (select 1 from store_paths s where s.path = ${path})
    and exists (
      select 1 from derivation_outputs o join builds p on p.derivation_path = o.derivation_path
      where o.path = ${path} and p.state in ('failed', 'canceled'))
    and not exists (
      select 1 from derivation_outputs o join builds p on p.derivation_path = o.derivation_path
      where o.path = ${path} and p.state in ('scheduled', 'allocated', 'started', 'succeeded')))`;
}

/**
 * Fails the scheduled builds among `buildIds` that wait for a dead input, then the builds
 * that wait on their outputs, and so on. Returns every build it failed.
 */
export async function failDoomed(tx: Queryable, buildIds: string[]): Promise<string[]> {
  const failed: string[] = [];
  let candidates = [...new Set(buildIds)];
  for (let level = 0; candidates.length > 0 && level < MAX_LEVELS; level++) {
    const rows = rowsOf<{ id: string; dependent: string | null }>(
      await tx.execute(sql`
        with doomed as (
          select distinct on (w.build_id) w.build_id as id, w.path, p.id as producer
          from build_waits w
          join derivation_outputs o on o.path = w.path
          join builds p on p.derivation_path = o.derivation_path and p.state in ('failed', 'canceled')
          where w.build_id = any(${sql.param(candidates)}::uuid[]) and ${deadInput('w')}
          order by w.build_id, w.path, p.ended_at desc nulls last),
        locked as (
          select b.id, d.path, d.producer from builds b join doomed d on d.id = b.id
          where b.state = 'scheduled'
          order by b.id for update of b),
        failed as (
          update builds b set state = 'failed', failure_reason = ${DEPENDENCY_FAILED}::text, failed_input = l.path, failed_input_build = l.producer,
            agent_id = null, lease_until = null, not_before = null, updated_at = now(), ended_at = now()
          from locked l where b.id = l.id
          returning b.id, b.derivation_path, l.path, l.producer),
        event as (
          insert into events (type, build_id, payload)
          select 'build-failure', f.id,
            jsonb_build_object('outcome', ${DEPENDENCY_FAILED}::text, 'reason', ${DEPENDENCY_FAILED}::text, 'input', f.path, 'inputBuild', f.producer, 'retry', false)
          from failed f order by f.id)
        select f.id, w.build_id as dependent from failed f
        left join derivation_outputs o on o.derivation_path = f.derivation_path
        left join build_waits w on w.path = o.path`),
    );
    const ids = new Set(rows.map((r) => r.id));
    failed.push(...ids);
    candidates = [...new Set(rows.flatMap((r) => (r.dependent && !ids.has(r.dependent) ? [r.dependent] : [])))];
  }
  return failed;
}

/** Fails the scheduled builds that wait on an output of these builds' derivations, if it became a dead input (their producer ended). */
export async function failDependentsOf(tx: Queryable, buildIds: string[]): Promise<string[]> {
  if (buildIds.length === 0) return [];
  const waiters = rowsOf<{ build_id: string }>(
    await tx.execute(sql`
      select distinct w.build_id from builds b
      join derivation_outputs o on o.derivation_path = b.derivation_path
      join build_waits w on w.path = o.path
      where b.id = any(${sql.param(buildIds)}::uuid[])`),
  );
  return failDoomed(
    tx,
    waiters.map((w) => w.build_id),
  );
}

/**
 * The paths can come now (they arrived, or a build that makes them is queued): the
 * dependency-failed builds that wait for one of them go back to the queue, unless another
 * of their inputs is dead (then they name that one); then the builds that failed for want
 * of theirs. Returns the
 * builds revived, with whether each is ready (waits for nothing).
 */
export async function reviveDependents(tx: Queryable, paths: string[]): Promise<{ id: string; ready: boolean }[]> {
  const revived: { id: string; ready: boolean }[] = [];
  let coming = [...new Set(paths)];
  for (let level = 0; coming.length > 0 && level < MAX_LEVELS; level++) {
    const rows = rowsOf<{ id: string; ready: boolean; path: string | null }>(
      await tx.execute(sql`
        with candidates as (
          select id from builds where failed_input = any(${sql.param(coming)}::text[])
          union
          select build_id from build_waits where path = any(${sql.param(coming)}::text[])),
        locked as (
          select b.id, b.failed_input from builds b join candidates c on c.id = b.id
          where b.state = 'failed' and b.failure_reason = ${DEPENDENCY_FAILED}::text
          order by b.id for update of b),
        still as (
          select distinct on (w.build_id) w.build_id as id, w.path, p.id as producer
          from locked l join build_waits w on w.build_id = l.id
          join derivation_outputs o on o.path = w.path
          join builds p on p.derivation_path = o.derivation_path and p.state in ('failed', 'canceled')
          where ${deadInput('w')}
          order by w.build_id, w.path, p.ended_at desc nulls last),
        renamed as (
          -- Another input of theirs will not come either: they stay failed, naming that one.
          update builds b set failed_input = s.path, failed_input_build = s.producer
          from still s where b.id = s.id and b.failed_input is distinct from s.path),
        revived as (
          update builds b set state = 'scheduled', failure_reason = null, failed_input = null, failed_input_build = null,
            ended_at = null, not_before = null, updated_at = now()
          from locked l
          where b.id = l.id and not exists (select 1 from still s where s.id = l.id)
          returning b.id, b.derivation_path, b.waiting, l.failed_input),
        event as (
          insert into events (type, build_id, payload)
          select 'build-retried', r.id, jsonb_build_object('previousState', 'failed', 'reason', 'dependency-available', 'input', r.failed_input)
          from revived r order by r.id)
        select r.id, r.waiting = 0 as ready, o.path from revived r
        left join derivation_outputs o on o.derivation_path = r.derivation_path`),
    );
    const seen = new Set<string>();
    for (const r of rows) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      revived.push({ id: r.id, ready: r.ready });
    }
    coming = [...new Set(rows.flatMap((r) => (r.path ? [r.path] : [])))];
  }
  return revived;
}

/** The output paths of these derivations: what a queued build of them will bring. */
export async function outputPathsOf(tx: Queryable, derivationPaths: string[]): Promise<string[]> {
  if (derivationPaths.length === 0) return [];
  const rows = rowsOf<{ path: string }>(
    await tx.execute(sql`select path from derivation_outputs where derivation_path = any(${sql.param(derivationPaths)}::text[])`),
  );
  return rows.map((r) => r.path);
}
