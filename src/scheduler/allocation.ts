// Claiming builds for an agent. An allocation policy picks which ready builds an agent
// gets; every policy claims through `runClaim`, one statement that locks the picked
// rows (`FOR UPDATE SKIP LOCKED`, in lockedCandidates) and marks them allocated, so
// several coordinators sharing one PostgreSQL never hand out a build twice. On PGlite
// (one connection) the statement is simply atomic.
import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import type { AgentFeatures } from './placement.js';
import type { Tag } from './tags.js';

export interface AgentCapabilities {
  agentId: string;
  systems: string[];
  tags: Tag[];
  features: AgentFeatures;
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
  /**
   * Optional: claims for several agents of the same systems and tags in one statement,
   * as if each had claimed alone, the best builds first. Undefined when it cannot (then
   * each agent claims alone).
   */
  claimForGroup?(db: Database, group: AgentGroup, opts: ClaimOptions): Promise<Map<string, ClaimedBuild[]> | undefined>;
}

/** Agents alike in systems, tags and features, each with how many builds it takes now. */
export interface AgentGroup {
  systems: string[];
  tags: Tag[];
  features: AgentFeatures;
  agents: { agentId: string; limit: number }[];
}

export interface ClaimOptions {
  /** How long the agent holds a claimed build without the coordinator renewing it. */
  leaseMs: number;
}


/**
 * The builds this agent may take now, for one of its systems: scheduled, every input
 * in the cache, past any retry backoff, every tag of the build on the agent, every
 * feature it requires supported and every mandatory one of the agent required
 * (placement.ts), and not excluded from this agent. In allocation order, so the builds_ready index serves it:
 * `nulls last` as in the index (the column is never null, but the planner only walks an
 * index in its order when the null ordering matches too, else it sorts every ready build).
 */
function readyFor(agent: Candidate, system: string, extraColumns: SQL = sql``): SQL {
  return sql`
    select b.id ${extraColumns}
    from builds b
    where b.state = 'scheduled' and b.waiting = 0 and b.system = ${system}
      and (b.not_before is null or b.not_before <= now())
      and ${offersWhatItNeeds(agent)}
      ${agent.agentId === undefined ? sql`` : sql`and not exists (select 1 from build_exclusions x where x.build_id = b.id and x.agent_id = ${agent.agentId})`}
      and (b.check_of is null or ${checkByTagAllows(agent)})
    order by b.derived_priority desc nulls last, b.seq`;
}

/**
 * Whether the agent carries every tag of build `b` and supports every feature it requires,
 * and `b` requires every mandatory feature of the agent (placement.ts, tags.ts).
 */
export function offersWhatItNeeds(agent: Pick<AgentCapabilities, 'tags' | 'features'>): SQL {
  return sql`not exists (
        select 1 from build_tags t
        where t.build_id = b.id
          and not exists (
            select 1 from unnest(${sql.param(agent.tags.map((t) => t.key))}::text[], ${sql.param(agent.tags.map((t) => t.value))}::text[]) as a(k, v)
            where a.k = t.key and a.v = t.value))
      and b.required_features <@ ${sql.param(agent.features.supported)}::text[]
      ${agent.features.mandatory.length === 0 ? sql`` : sql`and b.required_features @> ${sql.param(agent.features.mandatory)}::text[]`}`;
}

/**
 * A reproducibility check by a tag (reproducibility.ts) goes only to an agent whose value
 * of that tag no result of the check has yet; one by agent is kept from the agents that
 * built it by exclusions. Agents of a group share their tags, so a group may ask too.
 */
function checkByTagAllows(agent: Candidate): SQL {
  return sql`not exists (
    select 1 from reproducibility_checks r
    where r.build_id = b.check_of and r.by_tag <> ''
      and not exists (
        select 1 from unnest(${sql.param(agent.tags.map((t) => t.key))}::text[], ${sql.param(agent.tags.map((t) => t.value))}::text[]) as a(k, v)
        where a.k = r.by_tag and not exists (select 1 from check_outputs c where c.build_id = r.build_id and c.tag_value = a.v)))`;
}

/** Whose candidates: an agent's, or (no agentId) a group's, whose exclusions are checked apart. */
type Candidate = Omit<AgentCapabilities, 'agentId'> & { agentId?: string };

/** Up to `limit` ready builds per system of the agent, locked (skipping locked ones), as one union. */
export function lockedCandidates(agent: Candidate, limit: number, extraColumns: SQL = sql``): SQL {
  return sql.join(
    // A locking clause may not sit on a branch of a UNION itself, only inside a subquery.
    agent.systems.map((system, i) => sql`select * from (${readyFor(agent, system, extraColumns)} limit ${limit} for update of b skip locked) as ${sql.raw(`s${i}`)}`),
    sql` union all `,
  );
}

/**
 * One statement that marks the picked builds (`id`, `agent_id` pairs) allocated to their
 * agents, with a lease, opens an attempt for each, and returns what the assignments need
 * (the derivation's text and outputs): one round trip, atomic on its own. `before`: more
 * CTEs (each followed by a comma) that `picked` and `also` may use.
 */
function claimStatement(picked: SQL, opts: ClaimOptions, also: SQL = sql``, before: SQL = sql``): SQL {
  return sql`
    with ${before} picked as (${picked}),
    claimed as (
      update builds b
      set state = 'allocated', agent_id = p.agent_id, attempt = b.attempt + 1, not_before = null,
          lease_until = now() + make_interval(secs => ${opts.leaseMs / 1000}), updated_at = now()
      from picked p where b.id = p.id and b.state = 'scheduled'
      returning b.id, b.agent_id, b.derivation_path, b.derived_priority, b.attempt, b.timeout_seconds, b.max_silent_seconds),
    attempts as (
      insert into build_attempts (build_id, attempt, agent_id)
      select id, attempt, agent_id from claimed)
    select c.*,
      -- Looked up per claimed build (by index), never by hashing every derivation.
      (select d.text from derivations d where d.path = c.derivation_path) as text,
      (select json_agg(json_build_object('name', o.name, 'path', o.path, 'hashAlgo', o.hash_algo, 'hash', o.hash) order by o.name)
       from derivation_outputs o where o.derivation_path = c.derivation_path) as outputs,
      false as blocked
    from claimed c
    ${also}`;
}

interface ClaimRow {
  id: string;
  agent_id: string;
  derivation_path: string;
  derived_priority: number;
  attempt: number;
  timeout_seconds: number;
  max_silent_seconds: number;
  text: string;
  outputs: ClaimedOutput[] | string | null;
  blocked: boolean;
}

function claimedBuild(r: ClaimRow): ClaimedBuild {
  return {
    id: r.id,
    derivationPath: r.derivation_path,
    priority: Number(r.derived_priority),
    attempt: Number(r.attempt),
    timeoutSeconds: Number(r.timeout_seconds),
    maxSilentSeconds: Number(r.max_silent_seconds),
    derivation: r.text,
    outputs: typeof r.outputs === 'string' ? (JSON.parse(r.outputs) as ClaimedOutput[]) : r.outputs ?? [],
  };
}

/** Claims the picked builds (a query of their `id`s) for one agent. */
export async function runClaim(db: Database, agentId: string, picked: SQL, opts: ClaimOptions): Promise<ClaimedBuild[]> {
  const rows = rowsOf<ClaimRow>(await db.execute(claimStatement(sql`select id, ${agentId}::uuid as agent_id from (${picked}) p`, opts)));
  return rows.map(claimedBuild).sort((a, b) => b.priority - a.priority);
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

  /**
   * The best `total` ready builds, dealt to the group's free slots round by round (each
   * agent's first slot, then each one's second…), so every agent's builds are better
   * than all those left. A build one of the agents must not have (an exclusion) would
   * need a choice per agent: when there is one, nothing is claimed and the group is
   * reported blocked, and its agents claim alone.
   */
  async claimForGroup(db, group, opts) {
    const slots = dealSlots(group.agents);
    if (slots.length === 0 || group.systems.length === 0) return new Map();
    // Looked for once, from the agents' exclusions (by index; there are few) to their
    // builds one by one: a join let the planner walk every scheduled build instead, and
    // probe its exclusions, twice a claim. The subquery per exclusion keeps that order.
    const blocked = sql`blocked as (
      select exists (
        select 1 from build_exclusions x
        where x.agent_id = any(${sql.param(group.agents.map((a) => a.agentId))}::uuid[])
          and (select b.state = 'scheduled' and b.system = any(${sql.param(group.systems)}::text[]) from builds b where b.id = x.build_id)
      ) as yes),`;
    const picked = sql`
      select c.id, s.agent_id
      from (
        select id, row_number() over (order by derived_priority desc nulls last, seq) as n
        from (${lockedCandidates({ systems: group.systems, tags: group.tags, features: group.features }, slots.length, sql`, b.derived_priority, b.seq`)}) c
        where not (select yes from blocked)
        order by derived_priority desc nulls last, seq
        limit ${slots.length}) c
      join unnest(${sql.param(slots)}::uuid[]) with ordinality as s(agent_id, n) on s.n = c.n
      limit ${slots.length}`;
    const also = sql`union all
      select null, null, null, null, null, null, null, null, null, true from blocked where yes`;
    const rows = rowsOf<ClaimRow>(await db.execute(claimStatement(picked, opts, also, blocked)));
    if (rows.some((r) => r.blocked)) return undefined;
    const byAgent = new Map<string, ClaimedBuild[]>(group.agents.map((a) => [a.agentId, []]));
    for (const r of rows) byAgent.get(r.agent_id)?.push(claimedBuild(r));
    for (const builds of byAgent.values()) builds.sort((a, b) => b.priority - a.priority);
    return byAgent;
  },
};

/** The agents' free slots in dealing order: every agent's first, then every agent's second… */
export function dealSlots(agents: { agentId: string; limit: number }[]): string[] {
  const slots: string[] = [];
  for (let round = 0; agents.some((a) => a.limit > round); round++) {
    for (const a of agents) if (a.limit > round) slots.push(a.agentId);
  }
  return slots;
}
