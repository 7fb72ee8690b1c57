// Claiming builds for an agent: one statement that picks the highest-priority ready
// builds the agent can take and marks them allocated to it. `FOR UPDATE SKIP LOCKED`
// lets several coordinators share one PostgreSQL without handing out a build twice;
// on PGlite (one connection) the statement is simply atomic.
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import type { Tag } from './tags.js';

export interface AgentCapabilities {
  agentId: string;
  systems: string[];
  tags: Tag[];
}

interface ClaimRow {
  id: string;
  derivation_path: string;
  priority: number;
  attempt: number;
}

export interface ClaimedBuild {
  id: string;
  derivationPath: string;
  priority: number;
  attempt: number;
}

/**
 * Claims up to `limit` builds for the agent. A build qualifies when it is scheduled, its
 * system is one of the agent's, the agent carries every tag of the build, every output
 * of its input derivations is in the cache (store_paths), and so is everything its .drv
 * refers to (input sources and input .drv files: what the agent fetches first). Input
 * derivations' own sources were checked the same way when they were built here.
 */
export async function claimBuilds(db: Database, agent: AgentCapabilities, limit: number): Promise<ClaimedBuild[]> {
  if (limit <= 0 || agent.systems.length === 0) return [];
  const tagKeys = agent.tags.map((t) => t.key);
  const tagValues = agent.tags.map((t) => t.value);
  const rows = await db.transaction(async (tx) => {
    const claimed = await tx.execute(sql`
      with candidates as (
        select b.id
        from builds b
        join derivations d on d.path = b.derivation_path
        where b.state = 'scheduled'
          and d.system = any(${sql.param(agent.systems)}::text[])
          and not exists (
            select 1 from build_tags t
            where t.build_id = b.id
              and not exists (
                select 1 from unnest(${sql.param(tagKeys)}::text[], ${sql.param(tagValues)}::text[]) as a(k, v)
                where a.k = t.key and a.v = t.value))
          and not exists (
            select 1 from derivation_inputs i
            join derivation_outputs o on o.derivation_path = i.input_path and o.name = i.output_name
            where i.derivation_path = b.derivation_path
              and not exists (select 1 from store_paths s where s.path = o.path))
          and not exists (
            select 1 from store_paths dp
            cross join lateral unnest(dp.references) as r(path)
            where dp.path = b.derivation_path
              and not exists (select 1 from store_paths s where s.path = r.path))
        order by b.priority desc, b.created_at, b.id
        limit ${limit}
        for update of b skip locked
      )
      update builds
      set state = 'allocated', agent_id = ${agent.agentId}, attempt = builds.attempt + 1,
          lease_until = null, updated_at = now()
      from candidates
      where builds.id = candidates.id
      returning builds.id, builds.derivation_path, builds.priority, builds.attempt`);
    const list = rowsOf<ClaimRow>(claimed);
    for (const b of list) {
      await tx.execute(sql`
        insert into build_attempts (build_id, attempt, agent_id) values (${b.id}, ${b.attempt}, ${agent.agentId})`);
    }
    return list;
  });
  return rows
    .map((r) => ({ id: r.id, derivationPath: r.derivation_path, priority: r.priority, attempt: r.attempt }))
    .sort((a, b) => b.priority - a.priority);
}
