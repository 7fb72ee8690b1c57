// The two reports every build sends, started and succeeded, for the case that needs no
// explaining: the agent holds the build and, for a success, every output is stored as
// reported (served already, or pending for this attempt, then served by the same statement). One statement changes the builds, their attempts and writes their events
// (atomic on its own), or leaves a build alone; a build left alone takes the checked path
// (build-reports.ts), which decides the rest and says what is wrong. Reports arriving
// together share a statement (batcher.ts), the builds locked in id order so that two
// such statements never deadlock: a farm's steady stream of reports costs a few round
// trips a second, not six or seven per report.
import { sql } from 'drizzle-orm';
import { Batcher, batcherPer } from '../batcher.js';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { retryingTransient } from '../db/transient.js';
import { Hash } from '../store/hash.js';
import { isUuid } from '../uuid.js';
import type { ReportedOutput } from './output-check.js';
import { clearPendingOf, servePendingOf } from './pending-outputs.js';

interface Start {
  agentId: string;
  buildId: string;
}

interface Success extends Start {
  message: string;
  /** With hashes in the form upload-receiver stores. */
  reported: ReportedOutput[];
}

/** Marks the agent's allocated build started. False if it is not that (the checked path decides). */
export async function startAllocated(db: Database, agentId: string, buildId: string): Promise<boolean> {
  if (!isUuid(buildId)) return false;
  return starts(db).call({ agentId, buildId });
}

/**
 * Marks the agent's build succeeded if the report names exactly the derivation's
 * outputs, each stored with the reported path, NAR hash and size (hashes compared in
 * one canonical form). False if anything differs (the checked path decides).
 */
export async function succeedHeld(db: Database, agentId: string, buildId: string, message: string, reported: ReportedOutput[]): Promise<boolean> {
  if (!isUuid(buildId)) return false;
  const canonical = reported.map((r) => ({ ...r, narHash: canonicalHash(r.narHash) }));
  if (canonical.some((r) => r.narHash === undefined) || new Set(reported.map((r) => r.name)).size !== reported.length) return false;
  return successes(db).call({ agentId, buildId, message, reported: canonical as ReportedOutput[] });
}

// A deadlock or serialization failure would otherwise fail every report of the batch.
const starts = batcherPer((db: Database) => new Batcher(async (inputs: Start[]) => changed(inputs, await retryingTransient(() => startAll(db, inputs)))));
const successes = batcherPer((db: Database) => new Batcher(async (inputs: Success[]) => changed(inputs, await retryingTransient(() => succeedAll(db, inputs)))));

function changed(inputs: Start[], done: Set<string>): boolean[] {
  return inputs.map((i) => done.has(i.buildId));
}

async function startAll(db: Database, inputs: Start[]): Promise<Set<string>> {
  const rows = rowsOf<{ id: string }>(
    await db.execute(sql`
      with v as (select * from unnest(${sql.param(inputs.map((i) => i.buildId))}::uuid[], ${sql.param(inputs.map((i) => i.agentId))}::uuid[]) as v(id, agent_id)),
      locked as (
        select b.id from builds b join v on v.id = b.id and v.agent_id = b.agent_id
        where b.state = 'allocated' order by b.id for update of b),
      started as (
        update builds b set state = 'started', updated_at = now()
        from locked where b.id = locked.id
        returning b.id, b.attempt, b.agent_id),
      attempt as (
        update build_attempts a set started_at = now()
        from started s where a.build_id = s.id and a.attempt = s.attempt),
      event as (
        insert into events (type, build_id, agent_id, payload)
        select 'build-started', s.id, s.agent_id, jsonb_build_object('attempt', s.attempt) from started s)
      select id from started`),
  );
  return new Set(rows.map((r) => r.id));
}

async function succeedAll(db: Database, inputs: Success[]): Promise<Set<string>> {
  const outputs = inputs.flatMap((i) => i.reported.map((r) => ({ buildId: i.buildId, ...r })));
  // A build succeeds here when it reported as many outputs as its derivation has, and as
  // many of them (`good`; names are unique on both sides) are its derivation's outputs by
  // name and path, stored with the reported hash and size: counted for the whole batch at
  // once (a check per build that looked for its outputs among all the reported ones cost
  // the square of the batch). Builds and outputs are also found by `= any` of the ids and
  // paths, an index condition whatever the planner guesses: joined to `v` only, it took
  // every held build from the queue's index and checked each; joined to `reported` only,
  // it hashed all of derivation_outputs.
  const ids = sql`${sql.param(inputs.map((i) => i.buildId))}::uuid[]`;
  const paths = sql`${sql.param(outputs.map((o) => o.path))}::text[]`;
  const rows = rowsOf<{ id: string }>(
    await db.execute(sql`
      with v as (
        select * from unnest(${ids}, ${sql.param(inputs.map((i) => i.agentId))}::uuid[],
          ${sql.param(inputs.map((i) => i.message))}::text[], ${sql.param(inputs.map((i) => i.reported.length))}::int[])
          as v(id, agent_id, message, outputs)),
      reported as (
        select * from unnest(${sql.param(outputs.map((o) => o.buildId))}::uuid[], ${sql.param(outputs.map((o) => o.name))}::text[],
          ${paths}, ${sql.param(outputs.map((o) => o.narHash))}::text[],
          ${sql.param(outputs.map((o) => o.narSize))}::bigint[])
          as r(build_id, name, path, nar_hash, nar_size)),
      good as (
        select r.build_id, o.derivation_path, count(*) as n from reported r
        join derivation_outputs o on o.path = r.path and o.name = r.name
        join builds b on b.id = r.build_id
        left join store_paths s on s.path = r.path
        left join pending_outputs p on p.build_id = r.build_id and p.attempt = b.attempt and p.name = r.name
        where o.path = any(${paths}) and b.id = any(${ids})
          -- As the cache serves it, or (not served yet) as this attempt uploaded it.
          and case when s.path is not null then s.nar_hash = r.nar_hash and s.nar_size = r.nar_size
                   else p.path = r.path and p.nar_hash = r.nar_hash and p.nar_size = r.nar_size end
        group by r.build_id, o.derivation_path),
      locked as (
        select b.id, v.message from builds b join v on v.id = b.id and v.agent_id = b.agent_id
        left join good g on g.build_id = b.id and g.derivation_path = b.derivation_path
        where b.id = any(${ids}) and b.state in ('allocated', 'started')
          and v.outputs = (select count(*) from derivation_outputs o where o.derivation_path = b.derivation_path)
          and v.outputs = coalesce(g.n, 0)
          -- Checks and checked builds take the checked path (scheduler/reproducibility.ts).
          and b.check_of is null and not exists (select 1 from reproducibility_checks r where r.build_id = b.id and r.state = 'pending')
        order by b.id for update of b),
      done as (
        update builds b set state = 'succeeded', lease_until = null, updated_at = now(), ended_at = now()
        from locked where b.id = locked.id
        returning b.id, b.attempt, b.agent_id, locked.message),
      attempt as (
        update build_attempts a set ended_at = now(), outcome = 'success', message = d.message
        from done d where a.build_id = d.id and a.attempt = d.attempt),
      served as (${servePendingOf(sql`done`)}),
      cleared as (${clearPendingOf(sql`done`)}),
      event as (
        insert into events (type, build_id, agent_id, payload)
        select 'build-success', d.id, d.agent_id, jsonb_build_object('attempt', d.attempt, 'outcome', 'success', 'message', d.message)
        from done d)
      select id from done`),
  );
  return new Set(rows.map((r) => r.id));
}

/** The form upload-receiver stores NAR hashes in; undefined if it does not parse. */
function canonicalHash(text: string): string | undefined {
  try {
    return Hash.parse(text).toString();
  } catch {
    return undefined;
  }
}
