// Derived priority: a build's allocation order is the highest of its own priority and
// the derived priority of every build that waits on one of its outputs, so a high
// priority build pulls its inputs forward. "Waits on" is the build_waits frontier, not
// the whole derivation graph: an input whose output is in the cache already is waited on
// by nobody, so finished history never costs anything here.
//
// Kept incrementally: a raise walks down the waits from the changed build and stops
// where a build already has at least that priority; a lowering (or a cancel) recomputes
// only the builds below the changed one, in topological order.
import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';

type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];
type Executor = Database | Tx;

/** Builds that still may produce their outputs. */
const UNFINISHED = sql`('scheduled', 'allocated', 'started')`;

/**
 * Sets new builds' derived priorities from the builds already waiting on their outputs (a
 * build may be submitted after the builds that need it) and from each other (new builds
 * may wait on new builds), then raises their inputs'.
 */
export async function deriveNewBuildPriorities(tx: Executor, newBuilds: { id: string; priority: number }[]): Promise<void> {
  if (newBuilds.length === 0) return;
  const ids = newBuilds.map((b) => b.id);
  const derived = computeDerived(newBuilds, await waitersOf(tx, ids));
  const raised = newBuilds.filter((b) => derived.get(b.id)! !== b.priority);
  if (raised.length > 0) await setDerived(tx, raised.map((b) => ({ id: b.id, p: derived.get(b.id)! })));
  await raiseInputs(tx, ids);
}

/**
 * Pushes the builds' derived priorities down to the builds that make what they wait for,
 * and theirs, stopping wherever a build is at that priority already: one statement per
 * level of the waits, usually one in all (inputs are at the priority already). A single
 * recursive statement did the same, but its row estimates are hopeless, and the planner
 * answered them with nested loops over every build (seconds for a thousand new builds).
 */
export async function raiseInputs(tx: Executor, buildIds: string[]): Promise<void> {
  let frontier: SQL = sql`select id, derived_priority as p from builds where id = any(${sql.param(buildIds)}::uuid[])`;
  while (buildIds.length > 0) {
    const raised = rowsOf<{ id: string; p: number }>(await tx.execute(raiseOneLevel(frontier)));
    if (raised.length === 0) return;
    frontier = sql`select * from unnest(${sql.param(raised.map((r) => r.id))}::uuid[], ${sql.param(raised.map((r) => Number(r.p)))}::int[]) as f(id, p)`;
  }
}

/**
 * Raises the unfinished builds that make what the frontier's builds (id, p) wait for to
 * p where they are below it; returns them with their new priority. They are locked in id
 * order, as every statement that changes many builds locks them (no deadlocks).
 */
function raiseOneLevel(frontier: SQL): SQL {
  return sql`
    with f as (${frontier}),
    below as (
      select a.id, max(f.p) as p
      from f
      join build_waits w on w.build_id = f.id
      join derivation_outputs o on o.path = w.path
      join builds a on a.derivation_path = o.derivation_path and a.state in ${UNFINISHED}
      where a.derived_priority < f.p
      group by a.id),
    locked as (
      select b.id, below.p from builds b join below on below.id = b.id
      where b.id = any(array(select id from below)) order by b.id for update of b)
    update builds b set derived_priority = locked.p
    from locked
    where b.id = locked.id and b.derived_priority < locked.p
    returning b.id, b.derived_priority as p`;
}

interface Edge {
  input: string;
  waiter: string;
  waiter_derived: number;
}

/**
 * Recomputes the derived priorities below `buildIds` after their priority dropped or
 * they stopped waiting (canceled). The builds themselves are recomputed too unless
 * `excludeRoots` (a canceled build's own value no longer matters).
 */
export async function recomputeBelow(tx: Executor, buildIds: string[], opts: { excludeRoots?: boolean } = {}): Promise<void> {
  if (buildIds.length === 0) return;
  // Every unfinished build reachable down the waits, with its own priority.
  const nodes = rowsOf<{ id: string; priority: number; derived_priority: number }>(
    await tx.execute(sql`
      with recursive down(id) as (
        select unnest(${sql.param(buildIds)}::uuid[])
        union
        select a.id
        from down
        join build_waits w on w.build_id = down.id
        join derivation_outputs o on o.path = w.path
        join builds a on a.derivation_path = o.derivation_path and a.state in ${UNFINISHED}
      )
      select b.id, b.priority, b.derived_priority from down join builds b on b.id = down.id`),
  );
  const roots = new Set(buildIds);
  const affected = nodes.filter((n) => !(opts.excludeRoots && roots.has(n.id)));
  if (affected.length === 0) return;
  const ids = affected.map((n) => n.id);
  const derived = computeDerived(
    affected.map((n) => ({ id: n.id, priority: Number(n.priority) })),
    await waitersOf(tx, ids),
    opts.excludeRoots ? roots : new Set(),
  );
  const changed = affected.filter((n) => derived.get(n.id) !== Number(n.derived_priority));
  await setDerived(tx, changed.map((n) => ({ id: n.id, p: derived.get(n.id)! })));
}

/** Who waits on each of the builds (scheduled waiters only), with the waiter's current derived priority. */
async function waitersOf(tx: Executor, ids: string[]): Promise<{ input: string; waiter: string; waiterDerived: number }[]> {
  const edges = rowsOf<Edge>(
    await tx.execute(sql`
      select a.id as input, w.build_id as waiter, waiter.derived_priority as waiter_derived
      from builds a
      join derivation_outputs o on o.derivation_path = a.derivation_path
      join build_waits w on w.path = o.path
      join builds waiter on waiter.id = w.build_id and waiter.state = 'scheduled'
      where a.id = any(${sql.param(ids)}::uuid[])`),
  );
  return edges.map((e) => ({ input: e.input, waiter: e.waiter, waiterDerived: Number(e.waiter_derived) }));
}

async function setDerived(tx: Executor, values: { id: string; p: number }[]): Promise<void> {
  if (values.length === 0) return;
  await tx.execute(sql`
    with locked as (
      select b.id, v.p from builds b
      join unnest(${sql.param(values.map((v) => v.id))}::uuid[], ${sql.param(values.map((v) => v.p))}::int[]) as v(id, p) on v.id = b.id
      order by b.id for update of b)
    update builds b set derived_priority = locked.p
    from locked where b.id = locked.id`);
}

/**
 * The pure rule: derived(x) = max(own(x), derived(w) for every w waiting on x), over a set
 * of builds whose waiters inside the set are recomputed first (Kahn's order); waiters
 * outside the set keep their current value, and `ignored` waiters count for nothing.
 */
export function computeDerived(
  builds: { id: string; priority: number }[],
  edges: { input: string; waiter: string; waiterDerived: number }[],
  ignored: ReadonlySet<string> = new Set(),
): Map<string, number> {
  const inSet = new Set(builds.map((b) => b.id));
  const derived = new Map(builds.map((b) => [b.id, b.priority]));
  const pendingWaiters = new Map(builds.map((b) => [b.id, 0]));
  const inputsOf = new Map<string, string[]>();
  for (const e of edges) {
    if (ignored.has(e.waiter)) continue;
    if (inSet.has(e.waiter)) {
      pendingWaiters.set(e.input, pendingWaiters.get(e.input)! + 1);
      inputsOf.set(e.waiter, [...(inputsOf.get(e.waiter) ?? []), e.input]);
    } else {
      derived.set(e.input, Math.max(derived.get(e.input)!, e.waiterDerived));
    }
  }
  const ready = builds.filter((b) => pendingWaiters.get(b.id) === 0).map((b) => b.id);
  while (ready.length > 0) {
    const id = ready.pop()!;
    for (const input of inputsOf.get(id) ?? []) {
      derived.set(input, Math.max(derived.get(input)!, derived.get(id)!));
      const left = pendingWaiters.get(input)! - 1;
      pendingWaiters.set(input, left);
      if (left === 0) ready.push(input);
    }
  }
  return derived;
}
