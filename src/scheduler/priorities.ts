// Derived priority: a build's allocation order is the highest of its own priority and
// the derived priority of every build that waits on one of its outputs, so a high
// priority build pulls its inputs forward. "Waits on" is the build_waits frontier, not
// the whole derivation graph: an input whose output is in the cache already is waited on
// by nobody, so finished history never costs anything here.
//
// Kept incrementally: a raise walks down the waits from the changed build and stops
// where a build already has at least that priority; a lowering (or a cancel) recomputes
// only the builds below the changed one, in topological order.
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';

type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];
type Executor = Database | Tx;

/** Builds that still may produce their outputs. */
const UNFINISHED = sql`('scheduled', 'allocated', 'started')`;

/**
 * Sets a new build's derived priority from the builds already waiting on its outputs (a
 * build may be submitted after the builds that need it), then raises its inputs'.
 */
export async function deriveNewBuildPriority(tx: Executor, buildId: string): Promise<void> {
  await tx.execute(sql`
    update builds b set derived_priority = greatest(b.priority, coalesce((
      select max(waiter.derived_priority)
      from derivation_outputs o
      join build_waits w on w.path = o.path
      join builds waiter on waiter.id = w.build_id and waiter.state = 'scheduled'
      where o.derivation_path = b.derivation_path), b.priority))
    where b.id = ${buildId}`);
  await raiseInputs(tx, buildId);
}

/**
 * Pushes the build's derived priority down to the builds that make what it waits for,
 * and theirs, stopping wherever a build is at that priority already.
 */
export async function raiseInputs(tx: Executor, buildId: string): Promise<void> {
  await tx.execute(sql`
    with recursive down(id, p) as (
      select id, derived_priority from builds where id = ${buildId}
      union
      select a.id, down.p
      from down
      join build_waits w on w.build_id = down.id
      join derivation_outputs o on o.path = w.path
      join builds a on a.derivation_path = o.derivation_path and a.state in ${UNFINISHED}
      where a.derived_priority < down.p
    )
    update builds b set derived_priority = d.p
    from (select id, max(p) as p from down group by id) d
    where b.id = d.id and b.derived_priority < d.p`);
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
  // Who waits on each affected build, with the waiter's current derived priority.
  const edges = rowsOf<Edge>(
    await tx.execute(sql`
      select a.id as input, w.build_id as waiter, waiter.derived_priority as waiter_derived
      from builds a
      join derivation_outputs o on o.derivation_path = a.derivation_path
      join build_waits w on w.path = o.path
      join builds waiter on waiter.id = w.build_id and waiter.state = 'scheduled'
      where a.id = any(${sql.param(ids)}::uuid[])`),
  );
  const derived = computeDerived(
    affected.map((n) => ({ id: n.id, priority: Number(n.priority) })),
    edges.map((e) => ({ input: e.input, waiter: e.waiter, waiterDerived: Number(e.waiter_derived) })),
    opts.excludeRoots ? roots : new Set(),
  );
  const changed = affected.filter((n) => derived.get(n.id) !== Number(n.derived_priority));
  if (changed.length === 0) return;
  await tx.execute(sql`
    update builds b set derived_priority = v.p
    from unnest(${sql.param(changed.map((n) => n.id))}::uuid[], ${sql.param(changed.map((n) => derived.get(n.id)!))}::int[]) as v(id, p)
    where b.id = v.id`);
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
