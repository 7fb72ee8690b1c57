// The two reports every build sends, started and succeeded, each as one statement for
// the case that needs no explaining: the agent holds the build and, for a success, every
// output is stored as reported. The statement changes the build, its attempt and writes
// its event at once (atomic on its own), or changes nothing; then the caller takes the
// checked path (build-reports.ts), which decides the rest and says what is wrong. So a
// farm's steady stream of reports costs one round trip each instead of six or seven.
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { Hash } from '../store/hash.js';
import { isUuid } from '../uuid.js';
import type { ReportedOutput } from './output-check.js';

/** Marks the agent's allocated build started. False if it is not that (the checked path decides). */
export async function startAllocated(db: Database, agentId: string, buildId: string): Promise<boolean> {
  if (!isUuid(buildId)) return false;
  const rows = rowsOf<{ id: string }>(
    await db.execute(sql`
      with started as (
        update builds set state = 'started', updated_at = now()
        where id = ${buildId} and agent_id = ${agentId} and state = 'allocated'
        returning id, attempt),
      attempt as (
        update build_attempts a set started_at = now()
        from started s where a.build_id = s.id and a.attempt = s.attempt),
      event as (
        insert into events (type, build_id, agent_id, payload)
        select 'build-started', s.id, ${agentId}::uuid, jsonb_build_object('attempt', s.attempt) from started s)
      select id from started`),
  );
  return rows.length > 0;
}

/**
 * Marks the agent's build succeeded if the report names exactly the derivation's
 * outputs, each stored with the reported path, NAR hash and size (hashes compared in
 * one canonical form). False if anything differs (the checked path decides).
 */
export async function succeedHeld(db: Database, agentId: string, buildId: string, message: string, reported: ReportedOutput[]): Promise<boolean> {
  if (!isUuid(buildId)) return false;
  const hashes = reported.map((r) => canonicalHash(r.narHash));
  if (hashes.includes(undefined) || new Set(reported.map((r) => r.name)).size !== reported.length) return false;
  const rows = rowsOf<{ id: string }>(
    await db.execute(sql`
      with reported(name, path, nar_hash, nar_size) as (
        select * from unnest(${sql.param(reported.map((r) => r.name))}::text[], ${sql.param(reported.map((r) => r.path))}::text[],
          ${sql.param(hashes)}::text[], ${sql.param(reported.map((r) => r.narSize))}::bigint[])),
      done as (
        update builds b set state = 'succeeded', lease_until = null, updated_at = now(), ended_at = now()
        where b.id = ${buildId} and b.agent_id = ${agentId} and b.state in ('allocated', 'started')
          and (select count(*) from reported) = (select count(*) from derivation_outputs o where o.derivation_path = b.derivation_path)
          and not exists (
            select 1 from derivation_outputs o
            left join reported r on r.name = o.name
            left join store_paths s on s.path = o.path
            where o.derivation_path = b.derivation_path
              and (r.name is null or s.path is null or r.path <> o.path or r.nar_hash <> s.nar_hash or r.nar_size <> s.nar_size))
        returning b.id, b.attempt),
      attempt as (
        update build_attempts a set ended_at = now(), outcome = 'success', message = ${message}
        from done d where a.build_id = d.id and a.attempt = d.attempt),
      event as (
        insert into events (type, build_id, agent_id, payload)
        select 'build-success', d.id, ${agentId}::uuid,
          jsonb_build_object('attempt', d.attempt, 'outcome', 'success', 'message', ${message}::text) from done d)
      select id from done`),
  );
  return rows.length > 0;
}

/** The form upload-receiver stores NAR hashes in; undefined if it does not parse. */
function canonicalHash(text: string): string | undefined {
  try {
    return Hash.parse(text).toString();
  } catch {
    return undefined;
  }
}
