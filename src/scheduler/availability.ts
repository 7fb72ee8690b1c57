// Readiness: a scheduled build waits for the input paths (its input derivations' outputs
// and its sources) that are not in the cache; one build_waits row per path, and the
// count in builds.waiting. A path arriving in the cache releases the builds that waited
// on it, so readiness is kept current by the event, never recomputed over the queue.
//
// Submission and arrival race: a submission may not see a path whose upload commits at
// the same moment, and that upload may not see the new wait. So each side settles after
// its own commit (settleWaits, releasePaths): whichever commits second then sees the
// other's rows. sweepWaits is the safety net for a process that died between the two.
//
// An upstream cache's fresh, trusted narinfo makes a path available too (upstream-waits.ts):
// its lookups run apart from submission and claims, and release waits as an arrival does.
//
// Garbage collection removes paths, so a wait is only ever released by a path that is in
// the cache when the release runs, and a build that counts its inputs holds the cache
// lock (db/cache-lock.ts) so that gc cannot remove one it counted as present
// before the build is committed (after that, gc keeps what unfinished builds need).
import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { Batcher, batcherPer } from '../batcher.js';
import { rowsOf } from '../db/rows.js';
import { holdCacheShared } from '../db/cache-lock.js';
import { retryingTransient } from '../db/transient.js';
import { reviveDependents } from './dependency-failures.js';
import { pathAvailable, upstreamHas } from './upstream-waits.js';

type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];
type Executor = Database | Tx;

/**
 * Every input path (input derivations' outputs, and sources) of the builds' derivations,
 * as (build_id, path): joins over the whole set, which the planner handles for one build
 * or thousands (a lateral subquery per build made it hash a whole table per build).
 */
function inputPathsOfBuilds(buildIds: string[]): SQL {
  const ids = sql.param(buildIds);
  return sql`
    select b.id as build_id, o.path from builds b
    join derivation_inputs i on i.derivation_path = b.derivation_path
    join derivation_outputs o on o.derivation_path = i.input_path and o.name = i.output_name
    where b.id = any(${ids}::uuid[])
    union
    select b.id, s.path from builds b
    join derivation_sources s on s.derivation_path = b.derivation_path
    where b.id = any(${ids}::uuid[])`;
}

/**
 * Records what a scheduled build waits for: those of `paths` not in kiln's cache (an
 * agent said it could not get them, so an upstream's word for them is not taken), or by
 * default every input path of its derivation that is neither in the cache nor upstream.
 * Returns how many it waits for now.
 */
export async function addWaits(tx: Executor, buildId: string, paths?: string[]): Promise<number> {
  await holdCacheShared(tx);
  const wanted = paths ? sql`select unnest(${sql.param(paths)}::text[]) as path` : inputPathsOfBuilds([buildId]);
  const available = paths ? sql`exists (select 1 from store_paths s where s.path = w.path)` : pathAvailable(sql`w.path`);
  await tx.execute(sql`
    insert into build_waits (build_id, path)
    select ${buildId}, w.path from (${wanted}) w
    where not ${available}
    on conflict do nothing`);
  const [row] = rowsOf<{ waiting: number }>(
    await tx.execute(sql`
      update builds set waiting = (select count(*) from build_waits w where w.build_id = ${buildId})
      where id = ${buildId}
      returning waiting`),
  );
  return Number(row?.waiting ?? 0);
}

/** Input sources per statement: see SOURCES_PER_STATEMENT in submission.ts (PGlite runs a statement on the event loop). */
const SOURCE_WAITS_PER_STATEMENT = 500;

/**
 * Records what new builds (no waits yet) wait for: every input path of their derivations
 * not in the cache, and the count. Input derivations' outputs go in one statement;
 * sources, which a hostile or odd derivation has by the thousand, in pieces taken in
 * path order. Returns the count of each build that waits for something.
 */
export async function addWaitsOfNewBuilds(tx: Executor, buildIds: string[]): Promise<Map<string, number>> {
  await holdCacheShared(tx);
  const ids = sql.param(buildIds);
  await tx.execute(sql`
    insert into build_waits (build_id, path)
    select b.id, o.path from builds b
    join derivation_inputs i on i.derivation_path = b.derivation_path
    join derivation_outputs o on o.derivation_path = i.input_path and o.name = i.output_name
    where b.id = any(${ids}::uuid[]) and not ${pathAvailable(sql`o.path`)}
    on conflict do nothing`);
  for (let after: { id: string; path: string } | undefined; ; ) {
    const piece = rowsOf<{ id: string; path: string }>(
      await tx.execute(sql`
        select b.id::text as id, s.path from builds b
        join derivation_sources s on s.derivation_path = b.derivation_path
        where b.id = any(${ids}::uuid[]) ${after ? sql`and (b.id, s.path) > (${after.id}::uuid, ${after.path})` : sql``}
        order by b.id, s.path
        limit ${SOURCE_WAITS_PER_STATEMENT}`),
    );
    if (piece.length === 0) break;
    await tx.execute(sql`
      insert into build_waits (build_id, path)
      select w.build_id, w.path from unnest(${sql.param(piece.map((r) => r.id))}::uuid[], ${sql.param(piece.map((r) => r.path))}::text[]) as w(build_id, path)
      where not ${pathAvailable(sql`w.path`)}
      on conflict do nothing`);
    if (piece.length < SOURCE_WAITS_PER_STATEMENT) break;
    after = piece[piece.length - 1];
  }
  const rows = rowsOf<{ id: string; waiting: number }>(
    await tx.execute(sql`
      with counted as (
        select build_id, count(*)::int as n from build_waits
        where build_id = any(${ids}::uuid[]) group by build_id)
      update builds b set waiting = counted.n
      from counted where b.id = counted.build_id
      returning b.id, b.waiting`),
  );
  return new Map(rows.map((r) => [r.id, Number(r.waiting)]));
}

/** Drops waits whose path is available by now (run after the waits' own commit). Returns builds that became ready. */
export async function settleWaits(db: Executor, buildIds: string[]): Promise<string[]> {
  if (buildIds.length === 0) return [];
  const ready = await released(
    db,
    sql`delete from build_waits w
        where w.build_id = any(${sql.param(buildIds)}::uuid[]) and ${pathAvailable(sql`w.path`)}
        returning w.build_id, w.path`,
  );
  return ready.map((r) => r.id);
}

/** Paths an upstream was just found to have (run after the lookup's commit). Returns builds that became ready. */
export async function releaseUpstreamHits(db: Executor, paths: string[]): Promise<string[]> {
  if (paths.length === 0) return [];
  const ready = await released(
    db,
    sql`delete from build_waits w
        where w.path = any(${sql.param(paths)}::text[]) and ${upstreamHas(sql`w.path`)}
        returning w.build_id, w.path`,
  );
  return ready.map((r) => r.id);
}

/**
 * Paths that arrived in the cache (run after their commit). Returns builds that became
 * ready. Arrivals at the same moment share one statement (batcher.ts).
 */
export async function releasePaths(db: Executor, paths: string[]): Promise<string[]> {
  if (paths.length === 0) return [];
  return arrivals(db).call(paths);
}

const arrivals = batcherPer(
  (db: Executor) =>
    new Batcher(async (inputs: string[][]) => {
      const paths = [...new Set(inputs.flat())];
      // Only paths in the cache now release anything (gc may have taken one back meanwhile).
      // Both tables by the paths: a path many builds wait on makes the planner expect
      // thousands of waits, and it then hashed every stored path to find the few.
      const ready = await retryingTransient(() =>
        released(
          db,
          sql`delete from build_waits w using store_paths s
              where w.path = any(${sql.param(paths)}::text[]) and s.path = any(${sql.param(paths)}::text[]) and s.path = w.path
              returning w.build_id, w.path`,
        ),
      );
      // Builds that failed for want of one of them come back (dependency-failures.ts).
      const revived = (await retryingTransient(() => reviveDependents(db, paths))).filter((r) => r.ready).map((r) => r.id);
      // Each caller hears of the builds its own paths made ready (revived ones: all of them).
      return inputs.map((own) => [...ready.filter((r) => r.paths.some((p) => own.includes(p))).map((r) => r.id), ...revived]);
    }),
);

/** The safety net: waits on paths that are available, wherever they are. */
export async function sweepWaits(db: Executor): Promise<string[]> {
  const ready = await released(db, sql`delete from build_waits w where ${pathAvailable(sql`w.path`)} returning w.build_id, w.path`);
  return ready.map((r) => r.id);
}

/**
 * Runs a delete of waits (returning build_id, path) and lowers each affected build's
 * count by what it lost; gives the builds that became ready, with the paths that went.
 * The builds are locked in id order first: two arrivals whose waiters overlap (a common
 * input's outputs) would otherwise lock them in different orders and deadlock. Every join
 * here is of a few rows to builds by primary key, and each build's paths travel with
 * its count: the planner cannot tell how many waits a delete returns (one, or thousands
 * for a common input), and joining two of these sets to each other, or looking builds
 * up by the join and by `= any(array(…))` at once, cost the square of that number when
 * it guessed one (over a second for a path 2,709 builds waited on).
 */
async function released(db: Executor, deleteWaits: ReturnType<typeof sql>): Promise<{ id: string; paths: string[] }[]> {
  const rows = rowsOf<{ id: string; paths: string[] }>(
    await db.execute(sql`
      with gone as (${deleteWaits}),
      lost as (select build_id, count(*)::int as n, array_agg(path) as paths from gone group by build_id),
      locked as (
        select b.id, lost.n, lost.paths from lost join builds b on b.id = lost.build_id
        order by b.id for update of b),
      lowered as (
        update builds b set waiting = greatest(0, b.waiting - locked.n)
        from locked where b.id = locked.id
        returning b.id, b.waiting, b.state, locked.paths)
      select id, paths from lowered
      where waiting = 0 and state = 'scheduled'`),
  );
  return rows;
}
