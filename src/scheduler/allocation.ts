// Claiming builds for an agent. An allocation policy picks which ready builds an agent
// gets; every policy claims through `runClaim`, one statement that locks the picked
// rows (`FOR UPDATE SKIP LOCKED`, in lockedCandidates) and marks them allocated, so
// several coordinators sharing one PostgreSQL never hand out a build twice. On PGlite
// (one connection) the statement is simply atomic.
import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import type { Tag } from './tags.js';

export interface AgentCapabilities {
  agentId: string;
  systems: string[];
  tags: Tag[];
}

export interface ClaimedOutput {
  name: string;
  path: string;
  hashAlgo: string;
  hash: string;
}

/** A build just allocated to an agent, with what its assignment carries. */
export interface ClaimedBuild {
  id: string;
  derivationPath: string;
  /** Its derived priority when claimed. */
  priority: number;
  attempt: number;
  timeoutSeconds: number;
  maxSilentSeconds: number;
  /** The .drv text. */
  derivation: string;
  outputs: ClaimedOutput[];
}

/** Chooses which ready builds an agent gets. */
export interface AllocationPolicy {
  readonly name: string;
  claim(db: Database, agent: AgentCapabilities, limit: number, opts: ClaimOptions): Promise<ClaimedBuild[]>;
}

export interface ClaimOptions {
  /** How long the agent holds a claimed build without the coordinator renewing it. */
  leaseMs: number;
}

interface ClaimRow {
  id: string;
  derivation_path: string;
  derived_priority: number;
  attempt: number;
  timeout_seconds: number;
  max_silent_seconds: number;
  text: string;
  outputs: ClaimedOutput[] | string | null;
}

/**
 * The builds this agent may take now, for one of its systems: scheduled, every input
 * in the cache, past any retry backoff, every tag of the build on the agent, and not
 * excluded from this agent. In allocation order, so the builds_ready index serves it:
 * `nulls last` as in the index (the column is never null, but the planner only walks an
 * index in its order when the null ordering matches too, else it sorts every ready build).
 */
function readyFor(agent: AgentCapabilities, system: string, extraColumns: SQL = sql``): SQL {
  return sql`
    select b.id ${extraColumns}
    from builds b
    where b.state = 'scheduled' and b.waiting = 0 and b.system = ${system}
      and (b.not_before is null or b.not_before <= now())
      and not exists (
        select 1 from build_tags t
        where t.build_id = b.id
          and not exists (
            select 1 from unnest(${sql.param(agent.tags.map((t) => t.key))}::text[], ${sql.param(agent.tags.map((t) => t.value))}::text[]) as a(k, v)
            where a.k = t.key and a.v = t.value))
      and not exists (select 1 from build_exclusions x where x.build_id = b.id and x.agent_id = ${agent.agentId})
    order by b.derived_priority desc nulls last, b.seq`;
}

/** Up to `limit` ready builds per system of the agent, locked (skipping locked ones), as one union. */
export function lockedCandidates(agent: AgentCapabilities, limit: number, extraColumns: SQL = sql``): SQL {
  return sql.join(
    // A locking clause may not sit on a branch of a UNION itself, only inside a subquery.
    agent.systems.map((system, i) => sql`select * from (${readyFor(agent, system, extraColumns)} limit ${limit} for update of b skip locked) as ${sql.raw(`s${i}`)}`),
    sql` union all `,
  );
}

/**
 * One statement that marks the picked builds allocated to the agent, with a lease,
 * opens an attempt for each, and returns what the assignment needs (the derivation's
 * text and outputs): one round trip, atomic on its own.
 */
function claimStatement(agentId: string, picked: SQL, opts: ClaimOptions): SQL {
  return sql`
    with picked as (${picked}),
    claimed as (
      update builds
      set state = 'allocated', agent_id = ${agentId}, attempt = attempt + 1, not_before = null,
          lease_until = now() + make_interval(secs => ${opts.leaseMs / 1000}), updated_at = now()
      where id in (select id from picked) and state = 'scheduled'
      returning id, derivation_path, derived_priority, attempt, timeout_seconds, max_silent_seconds),
    attempts as (
      insert into build_attempts (build_id, attempt, agent_id)
      select id, attempt, ${agentId}::uuid from claimed)
    select c.*, d.text,
      (select json_agg(json_build_object('name', o.name, 'path', o.path, 'hashAlgo', o.hash_algo, 'hash', o.hash) order by o.name)
       from derivation_outputs o where o.derivation_path = c.derivation_path) as outputs
    from claimed c join derivations d on d.path = c.derivation_path`;
}

export async function runClaim(db: Database, agentId: string, picked: SQL, opts: ClaimOptions): Promise<ClaimedBuild[]> {
  const rows = rowsOf<ClaimRow>(await db.execute(claimStatement(agentId, picked, opts)));
  return rows
    .map((r) => ({
      id: r.id,
      derivationPath: r.derivation_path,
      priority: Number(r.derived_priority),
      attempt: Number(r.attempt),
      timeoutSeconds: Number(r.timeout_seconds),
      maxSilentSeconds: Number(r.max_silent_seconds),
      derivation: r.text,
      outputs: typeof r.outputs === 'string' ? (JSON.parse(r.outputs) as ClaimedOutput[]) : r.outputs ?? [],
    }))
    .sort((a, b) => b.priority - a.priority);
}

/** The default: the highest derived priority first, then submission order. */
export const priorityFirst: AllocationPolicy = {
  name: 'priority-first',
  async claim(db, agent, limit, opts) {
    if (limit <= 0 || agent.systems.length === 0) return [];
    const picked = sql`
      select id from (${lockedCandidates(agent, limit, sql`, b.derived_priority, b.seq`)}) c
      order by derived_priority desc nulls last, seq
      limit ${limit}`;
    return runClaim(db, agent.agentId, picked, opts);
  },
};
