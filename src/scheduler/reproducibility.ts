// Reproducibility checks: a build asked to be built on N distinct agents in all. The build
// itself is built and served as any other; once it succeeded, check builds (builds rows
// with check_of) build the same derivation one after another on agents that did not
// build it yet (by agent: exclusions; by a tag: the claim's condition in allocation.ts),
// each one's outputs kept in check_outputs, never served. When N results are in, the
// outputs are compared by NAR hash and the check decided, with an event for hooks.
// One check build at a time, so that two of them never meet in one claim on one agent.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import type { ReproducibilityState } from '../db/schema.js';
import { invalidArgument, KilnError, notFound } from '../errors.js';
import { isUuid } from '../uuid.js';
import type { Queryable } from './build-outputs.js';
import { insertBuilds } from './new-builds.js';
import { validateTag } from './tags.js';

/** The most agents one check may ask for. */
export const MAX_CHECK_AGENTS = 16;

export interface CheckRequest {
  /** Agents in all, the build's own included: 2 or more (0: no check). */
  agents: number;
  /** Agents must differ in this tag's value; '' for distinct agents. */
  byTag: string;
}

/** Refuses a request that cannot be met; `field` names it in the error. */
export function validateCheckRequest(req: CheckRequest, field: string): void {
  if (!Number.isInteger(req.agents) || req.agents < 2 || req.agents > MAX_CHECK_AGENTS) {
    throw invalidArgument(`${field} ${req.agents}: a reproducibility check builds on 2 to ${MAX_CHECK_AGENTS} agents in all (the build's own included)`);
  }
  if (req.byTag !== '') validateTag({ key: req.byTag, value: '' }, `${field}_by`);
}

/** What a report on a build changed for the checks: builds made, checks decided. */
export interface CheckEffects {
  submitted: string[];
  decided: { buildId: string; state: ReproducibilityState }[];
}

const none = (): CheckEffects => ({ submitted: [], decided: [] });

/**
 * Asks for a check of the build (or for more agents on one it has): pending until enough
 * agents built it. A build that succeeded already gets its first check build now; one
 * that failed or was canceled cannot be checked.
 */
export async function requestCheck(tx: Queryable, buildId: string, req: CheckRequest): Promise<CheckEffects> {
  if (!isUuid(buildId)) throw invalidArgument(`build id ${JSON.stringify(buildId)} is not a UUID`);
  validateCheckRequest(req, 'agents');
  const [build] = rowsOf<{ state: string; check_of: string | null }>(
    await tx.execute(sql`select state, check_of from builds where id = ${buildId}::uuid for update`),
  );
  if (!build) throw notFound(`no build with id ${buildId}`);
  if (build.check_of) throw new KilnError('failed_precondition', `build ${buildId} is itself a reproducibility check of build ${build.check_of}; check that one`);
  if (build.state === 'failed' || build.state === 'canceled') {
    throw new KilnError('failed_precondition', `build ${buildId} is ${build.state}: only a build that succeeds can be checked (retry it first)`);
  }
  const [existing] = rowsOf<{ wanted: number; by_tag: string }>(await tx.execute(sql`select wanted, by_tag from reproducibility_checks where build_id = ${buildId}::uuid`));
  if (existing && existing.by_tag !== req.byTag) {
    throw new KilnError(
      'failed_precondition',
      `build ${buildId} is checked ${existing.by_tag ? `by tag ${existing.by_tag}` : 'by agent'} already; a check by ${req.byTag ? `tag ${req.byTag}` : 'agent'} cannot be added to it`,
    );
  }
  await tx.execute(sql`
    insert into reproducibility_checks (build_id, wanted, by_tag) values (${buildId}::uuid, ${req.agents}, ${req.byTag})
    on conflict (build_id) do update set wanted = greatest(reproducibility_checks.wanted, excluded.wanted),
      state = case when excluded.wanted > reproducibility_checks.wanted then 'pending' else reproducibility_checks.state end,
      decided_at = case when excluded.wanted > reproducibility_checks.wanted then null else reproducibility_checks.decided_at end,
      message = case when excluded.wanted > reproducibility_checks.wanted then '' else reproducibility_checks.message end`);
  if (build.state !== 'succeeded') return none();
  const [{ results } = { results: 0 }] = rowsOf<{ results: number }>(
    await tx.execute(sql`select count(distinct position)::int as results from check_outputs where build_id = ${buildId}::uuid`),
  );
  if (Number(results) === 0) {
    const recorded = await recordServed(tx, buildId);
    if (!recorded) {
      throw new KilnError('failed_precondition', `the cache no longer holds every output of build ${buildId} (garbage collected?): retry the build, then check it`);
    }
  }
  return nextCheck(tx, buildId);
}

/**
 * The build succeeded (its outputs are served, in the caller's transaction): for a
 * checked build, its results are the first and the checks start; for a check build, its
 * pending outputs become its results (never served) and the check goes on or is decided.
 * Nothing for other builds.
 */
export async function checkedBuildSucceeded(tx: Queryable, buildId: string, checkOf: string | null, attempt: number): Promise<CheckEffects> {
  if (checkOf) {
    await keepCheckOutputs(tx, buildId, checkOf, attempt);
    return nextCheck(tx, checkOf);
  }
  const [asked] = rowsOf<{ n: number }>(await tx.execute(sql`select 1 as n from reproducibility_checks where build_id = ${buildId}::uuid and state = 'pending'`));
  if (!asked) return none();
  await recordServed(tx, buildId);
  return nextCheck(tx, buildId);
}

/** A check build failed for good (or was canceled): its check cannot be completed. */
export async function checkBuildEnded(tx: Queryable, buildId: string, why: string): Promise<CheckEffects> {
  const rows = rowsOf<{ build_id: string }>(
    await tx.execute(sql`
      update reproducibility_checks r set state = 'failed', decided_at = now(),
        message = 'check build ' || ${buildId}::text || ' ' || ${why}
      from builds b where b.id = ${buildId}::uuid and r.build_id = b.check_of and r.state = 'pending'
      returning r.build_id`),
  );
  return { submitted: [], decided: rows.map((r) => ({ buildId: r.build_id, state: 'failed' })) };
}

/** Statement: the agent's value of the check's tag, '' when it has none (or the check is by agent). */
const tagValueOf = (agentId: SqlValue, buildId: SqlValue) => sql`coalesce((
  select t.value from agent_tags t join reproducibility_checks r on r.by_tag = t.key
  where r.build_id = ${buildId} and t.agent_id = ${agentId}), '')`;
type SqlValue = ReturnType<typeof sql>;

/** The checked build's own outputs, as the cache serves them, at position 1. False when the cache lacks one. */
async function recordServed(tx: Queryable, buildId: string): Promise<boolean> {
  const id = sql`${buildId}::uuid`;
  const rows = rowsOf<{ missing: boolean }>(
    await tx.execute(sql`
      with outputs as (
        select o.name, o.path, s.nar_hash, s.nar_size, s.file_name, s.compression, s.file_size
        from builds b join derivation_outputs o on o.derivation_path = b.derivation_path
        left join store_paths s on s.path = o.path
        where b.id = ${id}),
      inserted as (
        insert into check_outputs (build_id, position, check_build_id, agent_id, tag_value, name, path, nar_hash, nar_size, file_name, compression, file_size)
        select ${id}, 1, ${id}, b.agent_id, ${tagValueOf(sql`b.agent_id`, id)}, o.name, o.path, o.nar_hash, o.nar_size, o.file_name, o.compression, o.file_size
        from outputs o cross join builds b
        where b.id = ${id} and not exists (select 1 from outputs where nar_hash is null)
        on conflict do nothing)
      select exists (select 1 from outputs where nar_hash is null) as missing`),
  );
  return rows[0]?.missing === false;
}

/** A check build's uploaded outputs: its results at the next position, out of pending_outputs. */
async function keepCheckOutputs(tx: Queryable, checkBuildId: string, checkOf: string, attempt: number): Promise<void> {
  const of = sql`${checkOf}::uuid`;
  await tx.execute(sql`
    with kept as (
      insert into check_outputs (build_id, position, check_build_id, agent_id, tag_value, name, path, nar_hash, nar_size, file_name, compression, file_size)
      select ${of}, (select coalesce(max(position), 0) + 1 from check_outputs where build_id = ${of}), p.build_id, b.agent_id,
        ${tagValueOf(sql`b.agent_id`, of)}, p.name, p.path, p.nar_hash, p.nar_size, p.file_name, p.compression, p.file_size
      from pending_outputs p join builds b on b.id = p.build_id
      where p.build_id = ${checkBuildId}::uuid and p.attempt = ${attempt}
      on conflict do nothing)
    delete from pending_outputs where build_id = ${checkBuildId}::uuid`);
}

/**
 * Submits the next check build when the check needs more results and none is on its
 * way; decides the check when it has them all.
 */
async function nextCheck(tx: Queryable, buildId: string): Promise<CheckEffects> {
  const id = sql`${buildId}::uuid`;
  const [check] = rowsOf<{ wanted: number; by_tag: string; state: string; results: number; running: number; derivation_path: string; priority: number }>(
    await tx.execute(sql`
      select r.wanted, r.by_tag, r.state, b.derivation_path, b.priority,
        (select count(distinct position)::int from check_outputs c where c.build_id = r.build_id) as results,
        (select count(*)::int from builds k where k.check_of = r.build_id and k.state in ('scheduled', 'allocated', 'started')) as running
      from reproducibility_checks r join builds b on b.id = r.build_id
      where r.build_id = ${id}`),
  );
  if (!check || check.state !== 'pending' || Number(check.running) > 0) return none();
  if (Number(check.results) >= Number(check.wanted)) return decide(tx, buildId);
  const checkId = randomUUID();
  const submitted = await insertBuilds(tx, [
    { id: checkId, derivationPath: check.derivation_path, priority: Number(check.priority), tags: [], reason: `reproducibility check of build ${buildId}` },
  ]);
  await tx.execute(sql`update builds set check_of = ${id} where id = ${checkId}::uuid`);
  // By agent: none that built it may take it. (By tag, the claim compares the tag's values.)
  if (check.by_tag === '') {
    await tx.execute(sql`
      insert into build_exclusions (build_id, agent_id, reason)
      select distinct ${checkId}::uuid, agent_id, 'built it already for the reproducibility check of build ' || ${buildId}::text
      from check_outputs where build_id = ${id} and agent_id is not null
      on conflict do nothing`);
  }
  return { submitted, decided: [] };
}

/** Compares every output's NAR hash across the results and writes the verdict and its event. */
async function decide(tx: Queryable, buildId: string): Promise<CheckEffects> {
  const results = await checkResults(tx, buildId);
  const differing = results.filter((o) => new Set(o.results.map((r) => r.narHash)).size > 1);
  const state: ReproducibilityState = differing.length === 0 ? 'reproducible' : 'unreproducible';
  await tx.execute(sql`update reproducibility_checks set state = ${state}, decided_at = now() where build_id = ${buildId}::uuid`);
  const payload = {
    state,
    agents: Math.max(0, ...results.map((o) => o.results.length)),
    outputs: results.map((o) => ({ name: o.name, path: o.path, reproducible: !differing.includes(o), hashes: o.results.map((r) => ({ agentId: r.agentId, narHash: r.narHash })) })),
  };
  await tx.execute(sql`
    insert into events (type, build_id, payload)
    values (${`build-${state}`}, ${buildId}::uuid, ${JSON.stringify(payload)}::jsonb)`);
  return { submitted: [], decided: [{ buildId, state }] };
}

export interface CheckResult {
  position: number;
  checkBuildId: string;
  agentId: string | null;
  tagValue: string;
  narHash: string;
  narSize: number;
  fileName: string;
  compression: string;
}

export interface CheckedOutput {
  name: string;
  path: string;
  /** By position: the build's own first. */
  results: CheckResult[];
}

export interface Reproducibility {
  state: ReproducibilityState;
  wanted: number;
  byTag: string;
  message: string;
  decidedAt: Date | null;
  outputs: CheckedOutput[];
  /** The check builds, oldest first. */
  checkBuilds: string[];
}

async function checkResults(db: Queryable, buildId: string): Promise<CheckedOutput[]> {
  const rows = rowsOf<{
    name: string;
    path: string;
    position: number;
    check_build_id: string;
    agent_id: string | null;
    tag_value: string;
    nar_hash: string;
    nar_size: number | string;
    file_name: string;
    compression: string;
  }>(await db.execute(sql`select * from check_outputs where build_id = ${buildId}::uuid order by name, position`));
  const byName = new Map<string, CheckedOutput>();
  for (const r of rows) {
    const output = byName.get(r.name) ?? { name: r.name, path: r.path, results: [] };
    byName.set(r.name, output);
    output.results.push({
      position: Number(r.position),
      checkBuildId: r.check_build_id,
      agentId: r.agent_id,
      tagValue: r.tag_value,
      narHash: r.nar_hash,
      narSize: Number(r.nar_size),
      fileName: r.file_name,
      compression: r.compression,
    });
  }
  return [...byName.values()];
}

/** The build's reproducibility check, or undefined when none was asked for. */
export async function getReproducibility(db: Database, buildId: string): Promise<Reproducibility | undefined> {
  if (!isUuid(buildId)) return undefined;
  const [check] = rowsOf<{ state: ReproducibilityState; wanted: number; by_tag: string; message: string; decided_at: Date | string | null }>(
    await db.execute(sql`select state, wanted, by_tag, message, decided_at from reproducibility_checks where build_id = ${buildId}::uuid`),
  );
  if (!check) return undefined;
  const checkBuilds = rowsOf<{ id: string }>(await db.execute(sql`select id from builds where check_of = ${buildId}::uuid order by seq`));
  return {
    state: check.state,
    wanted: Number(check.wanted),
    byTag: check.by_tag,
    message: check.message,
    decidedAt: check.decided_at === null ? null : new Date(check.decided_at),
    outputs: await checkResults(db, buildId),
    checkBuilds: checkBuilds.map((b) => b.id),
  };
}

/** One result's stored NAR (for /qa/<build>/<position>/<output>.nar), or undefined. */
export async function checkResultFile(db: Database, buildId: string, position: number, output: string): Promise<CheckResult | undefined> {
  if (!isUuid(buildId)) return undefined;
  const outputs = await checkResults(db, buildId);
  return outputs.find((o) => o.name === output)?.results.find((r) => r.position === position);
}

/** Checks by state, for the metrics. */
export async function checksByState(db: Database): Promise<{ state: ReproducibilityState; count: number }[]> {
  const rows = rowsOf<{ state: ReproducibilityState; count: number }>(
    await db.execute(sql`select state, count(*)::int as count from reproducibility_checks group by state`),
  );
  return rows.map((r) => ({ state: r.state, count: Number(r.count) }));
}
