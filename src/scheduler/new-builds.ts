// Writing new builds of stored derivations, any number at once: the rows with their tags
// and build-submitted events, what each waits for, their derived priorities (and their
// inputs'), and, where asked, builds for the inputs they wait on that no build makes.
// Every step is one statement for the whole set, so a thousand builds cost what one
// does, give or take the rows.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../db/rows.js';
import { KilnError } from '../errors.js';
import { addWaitsOfNewBuilds } from './availability.js';
import type { Queryable } from './build-outputs.js';
import { failDoomed, outputPathsOf, reviveDependents } from './dependency-failures.js';
import { deriveNewBuildPriorities, raiseInputs } from './priorities.js';
import { deferUndecided, noUpstreamHas, takeDecidedDeferrals } from './upstream-waits.js';
import type { Tag } from './tags.js';

export interface NewBuild {
  id: string;
  derivationPath: string;
  priority: number;
  tags: Tag[];
  timeoutSeconds?: number;
  maxSilentSeconds?: number;
  /** Why the build exists when no one submitted it (e.g. a missing input of another). */
  reason?: string;
  /**
   * Also submit builds for the inputs it waits on that no build will make (none queued,
   * running or failed), and theirs: what a farm that builds whole closures wants, and
   * the default; off for a farm that only builds what it is asked to.
   */
  submitMissingInputs?: boolean;
}

/**
 * Writes the builds, in the order given (their submission order). Returns the ids of
 * every build written, these and those submitted for their missing inputs. The caller
 * settles their waits after commit (settleWaits).
 */
export async function insertBuilds(tx: Queryable, list: NewBuild[]): Promise<string[]> {
  if (list.length === 0) return [];
  await insertRows(tx, list);
  const waiting = await addWaitsOfNewBuilds(
    tx,
    list.map((b) => b.id),
  );
  await deriveNewBuildPriorities(tx, list);
  // New builds are new producers: builds that failed for want of what they make come
  // back; and a new build waiting for an input whose builds all failed fails for it.
  const revived = await reviveDependents(tx, await outputPathsOf(tx, [...new Set(list.map((b) => b.derivationPath))]));
  await raiseInputs(tx, revived.map((r) => r.id));
  await failDoomed(
    tx,
    list.filter((b) => (waiting.get(b.id) ?? 0) > 0).map((b) => b.id),
  );
  const created = list.map((b) => b.id);
  const asking = list.filter((b) => b.submitMissingInputs && (waiting.get(b.id) ?? 0) > 0).map((b) => b.id);
  if (asking.length > 0) created.push(...(await submitForWaits(tx, sql`w.build_id = any(${sql.param(asking)}::uuid[])`)));
  return created;
}

/**
 * Builds for the producers of the chosen waits' paths that no upstream has; the waits
 * whose upstream lookup is not decided yet are marked to get theirs once it is
 * (submitForDecidedMisses), so that nothing below a path an upstream holds is built.
 */
async function submitForWaits(tx: Queryable, waits: ReturnType<typeof sql>): Promise<string[]> {
  await deferUndecided(tx, waits);
  return submitForMissing(tx, await producersFor(tx, sql`${waits} and not w.submit_on_miss`));
}

/**
 * The upstreams' answers for `paths` came in: submits the builds deferred on those that
 * no upstream has (with the waiting builds' tags, and so on down). Returns their ids.
 */
export async function submitForDecidedMisses(tx: Queryable, paths: string[]): Promise<string[]> {
  if (paths.length === 0) return [];
  const decided = await takeDecidedDeferrals(tx, paths);
  if (decided.length === 0) return [];
  return submitForMissing(
    tx,
    await producersFor(tx, sql`(w.build_id, w.path) in (select * from unnest(${sql.param(decided.map((d) => d.buildId))}::uuid[], ${sql.param(decided.map((d) => d.path))}::text[]))`),
  );
}

/**
 * Submits a build (with the waiter's tags) for each derivation that makes one of `paths`
 * and has no build that will make it, recursively. Returns the new builds' ids.
 */
export async function submitBuildsForMissing(tx: Queryable, waiter: { id: string }, paths: string[]): Promise<string[]> {
  if (paths.length === 0) return [];
  return submitForWaits(tx, sql`w.build_id = ${waiter.id} and w.path = any(${sql.param(paths)}::text[])`);
}

/** The builds' rows, tags and build-submitted events, in one statement. */
async function insertRows(tx: Queryable, list: NewBuild[]): Promise<void> {
  const tagged = list.flatMap((b) => b.tags.map((t) => ({ id: b.id, ...t })));
  const rows = rowsOf<{ id: string }>(
    await tx.execute(sql`
      with v as (
        select * from unnest(${sql.param(list.map((b) => b.id))}::uuid[], ${sql.param(list.map((b) => b.derivationPath))}::text[],
          ${sql.param(list.map((b) => b.priority))}::int[], ${sql.param(list.map((b) => b.timeoutSeconds ?? 0))}::int[],
          ${sql.param(list.map((b) => b.maxSilentSeconds ?? 0))}::int[], ${sql.param(list.map((b) => b.reason ?? ''))}::text[])
          with ordinality as v(id, derivation_path, priority, timeout_seconds, max_silent_seconds, reason, n)),
      inserted as (
        insert into builds (id, derivation_path, system, required_features, priority, derived_priority, timeout_seconds, max_silent_seconds)
        select v.id, v.derivation_path, d.system, d.required_features, v.priority, v.priority, v.timeout_seconds, v.max_silent_seconds
        from v join derivations d on d.path = v.derivation_path
        order by v.n
        returning id),
      tags as (
        insert into build_tags (build_id, key, value)
        select t.id, t.key, t.value
        from unnest(${sql.param(tagged.map((t) => t.id))}::uuid[], ${sql.param(tagged.map((t) => t.key))}::text[], ${sql.param(tagged.map((t) => t.value))}::text[]) as t(id, key, value)
        where t.id in (select id from inserted)),
      submitted as (
        insert into events (type, build_id, payload)
        select 'build-submitted', v.id,
          jsonb_build_object('derivationPath', v.derivation_path, 'priority', v.priority)
            || case when v.reason = '' then '{}'::jsonb else jsonb_build_object('reason', v.reason) end
        from v where v.id in (select id from inserted)
        order by v.n)
      select id from inserted`),
  );
  if (rows.length < list.length) {
    const found = new Set(rows.map((r) => r.id));
    const missing = list.find((b) => !found.has(b.id))!;
    throw new KilnError('not_found', `derivation ${missing.derivationPath} is not stored`);
  }
}

interface Producer {
  derivation_path: string;
  waiter: string;
  waiter_path: string;
}

/**
 * The derivations that make paths the chosen waits are on and that no build will make
 * (none queued, running or failed: a failed one waits for an operator), each once, with
 * the oldest waiter that needs it.
 */
async function producersFor(tx: Queryable, waits: ReturnType<typeof sql>): Promise<Producer[]> {
  return rowsOf<Producer>(
    await tx.execute(sql`
      select distinct on (o.derivation_path) o.derivation_path, w.build_id as waiter, wb.derivation_path as waiter_path
      from build_waits w
      join derivation_outputs o on o.path = w.path
      join builds wb on wb.id = w.build_id
      where ${waits}
        -- Still missing now: an output whose upload committed since the waits were counted
        -- needs no build (its wait is released when the submission settles).
        and not exists (select 1 from store_paths s where s.path = o.path)
        -- Not while an upstream may have it (deferred waits are kept out by the caller).
        and ${noUpstreamHas(sql`o.path`)}
        and not exists (
          select 1 from builds p
          where p.derivation_path = o.derivation_path and p.state in ('scheduled', 'allocated', 'started', 'failed'))
      order by o.derivation_path, wb.seq`),
  );
}

/** Builds for the producers, with their waiter's tags, and so on down. */
async function submitForMissing(tx: Queryable, producers: Producer[]): Promise<string[]> {
  if (producers.length === 0) return [];
  const waiters = [...new Set(producers.map((p) => p.waiter))];
  const tags = rowsOf<{ build_id: string; key: string; value: string }>(
    await tx.execute(sql`select build_id, key, value from build_tags where build_id = any(${sql.param(waiters)}::uuid[]) order by key`),
  );
  return insertBuilds(
    tx,
    producers.map((p) => ({
      id: randomUUID(),
      derivationPath: p.derivation_path,
      priority: 0,
      tags: tags.filter((t) => t.build_id === p.waiter).map(({ key, value }) => ({ key, value })),
      reason: `missing input of build ${p.waiter} (${p.waiter_path})`,
      submitMissingInputs: true,
    })),
  );
}
