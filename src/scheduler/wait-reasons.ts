// Why a scheduled build is not running: the first of missing inputs, a retry's backoff,
// no connected agent that matches it (system, tags, features), matching agents that are
// deactivated or draining, or simply no free slot. The rule is pure; the connected agents
// are whatever the caller knows of (it says whose: one replica's or the farm's).
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { featuresMatch, type AgentFeatures } from './placement.js';
import { tagsMatch, type Tag } from './tags.js';

export type WaitKind = 'missing-inputs' | 'retry-backoff' | 'no-matching-agent' | 'agents-unavailable' | 'free-slot';

export interface MissingInput {
  path: string;
  /** The unfinished build that will make it, if any. */
  buildId: string | null;
  /** Whether an upstream cache was asked for it; false until upstream lookups fill it. */
  upstreamAsked: boolean;
}

export interface WaitReason {
  kind: WaitKind;
  text: string;
  missingInputs: MissingInput[];
  missingInputCount: number;
  notBefore?: Date;
  unmatchedSystem?: string;
  unmatchedTags: Tag[];
  unmatchedFeatures: string[];
  agentsSeenBy: AgentsSeenBy;
  matchingAgents: number;
}

/** Whose connected agents were looked at: the answering replica's streams, or every replica's. */
export type AgentsSeenBy = 'replica' | 'farm';

/** A connected agent as placement sees it. */
export interface ConnectedAgent {
  agentId: string;
  systems: string[];
  tags: Tag[];
  features: AgentFeatures;
  /** Active and not draining: it may be given builds. */
  available: boolean;
}

export interface WaitingBuild {
  id: string;
  waitingInputs: number;
  notBefore: Date | null;
  system: string;
  tags: Tag[];
  requiredFeatures: string[];
}

/** How many missing inputs a wait reason lists by name. */
export const LISTED_MISSING = 100;

/** The input paths a build waits for (at most LISTED_MISSING), each with the build that will make it. */
export async function missingInputsOf(db: Database, buildId: string): Promise<MissingInput[]> {
  const rows = rowsOf<{ path: string; build_id: string | null }>(
    await db.execute(sql`
      select w.path,
        (select b.id from derivation_outputs o join builds b on b.derivation_path = o.derivation_path
         where o.path = w.path and b.state in ('scheduled', 'allocated', 'started')
         order by b.seq limit 1) as build_id
      from build_waits w where w.build_id = ${buildId}
      order by w.path limit ${LISTED_MISSING}`),
  );
  return rows.map((r) => ({ path: r.path, buildId: r.build_id, upstreamAsked: false }));
}

/** Agents the build must not go to again (they could not delete its outputs). */
export async function excludedAgentsOf(db: Database, buildId: string): Promise<Set<string>> {
  const rows = rowsOf<{ agent_id: string }>(await db.execute(sql`select agent_id from build_exclusions where build_id = ${buildId}`));
  return new Set(rows.map((r) => r.agent_id));
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function explainWait(
  build: WaitingBuild,
  missing: MissingInput[],
  agents: ConnectedAgent[],
  excluded: ReadonlySet<string>,
  seenBy: AgentsSeenBy,
  now: Date,
): WaitReason {
  const where = seenBy === 'replica' ? 'connected to this coordinator' : 'connected';
  const base: WaitReason = {
    kind: 'free-slot',
    text: '',
    missingInputs: [],
    missingInputCount: 0,
    unmatchedTags: [],
    unmatchedFeatures: [],
    agentsSeenBy: seenBy,
    matchingAgents: 0,
  };
  if (build.waitingInputs > 0) {
    const named = missing.map((m) => `${m.path} (${m.buildId ? `build ${m.buildId} makes it` : 'no build makes it'}${m.upstreamAsked ? '; no upstream has it' : ''})`);
    const more = build.waitingInputs > missing.length ? `, and ${build.waitingInputs - missing.length} more` : '';
    const upstream = missing.some((m) => m.upstreamAsked) ? '' : '; no upstream cache was asked';
    return {
      ...base,
      kind: 'missing-inputs',
      text: `waiting for ${plural(build.waitingInputs, 'input path')} not in the cache yet: ${named.join(', ')}${more}${upstream}`,
      missingInputs: missing,
      missingInputCount: build.waitingInputs,
    };
  }
  if (build.notBefore && build.notBefore > now) {
    const seconds = Math.ceil((build.notBefore.getTime() - now.getTime()) / 1000);
    return { ...base, kind: 'retry-backoff', text: `a retry after a failed attempt: not before ${build.notBefore.toISOString()} (in ${seconds} s)`, notBefore: build.notBefore };
  }
  const matching = agents.filter((a) => a.systems.includes(build.system) && tagsMatch(build.tags, a.tags) && featuresMatch(build.requiredFeatures, a.features));
  if (matching.length === 0) return { ...base, ...noMatch(build, agents, where) };
  const allowed = matching.filter((a) => !excluded.has(a.agentId));
  if (allowed.length === 0) {
    return {
      ...base,
      kind: 'no-matching-agent',
      text: `the ${plural(matching.length, 'agent')} ${where} that could build it could not delete its outputs on an earlier attempt, so ${matching.length === 1 ? 'it is' : 'they are'} not given it again`,
    };
  }
  const available = allowed.filter((a) => a.available).length;
  if (available === 0) {
    return {
      ...base,
      kind: 'agents-unavailable',
      text: `the ${plural(allowed.length, 'agent')} ${where} that could build it ${allowed.length === 1 ? 'is' : 'are'} deactivated or draining (kiln agent activate <id>)`,
      matchingAgents: allowed.length,
    };
  }
  return { ...base, kind: 'free-slot', text: `ready: waiting for a free slot on ${plural(available, 'agent')} ${where} that can build it`, matchingAgents: available };
}

/** Which of the build's system, tags and features no agent offers, in words with what would take it. */
function noMatch(build: WaitingBuild, agents: ConnectedAgent[], where: string): Pick<WaitReason, 'kind' | 'text' | 'unmatchedSystem' | 'unmatchedTags' | 'unmatchedFeatures'> {
  const kind = 'no-matching-agent' as const;
  if (agents.length === 0) return { kind, text: `no agent is ${where}`, unmatchedSystem: build.system, unmatchedTags: [], unmatchedFeatures: [] };
  const ofSystem = agents.filter((a) => a.systems.includes(build.system));
  if (ofSystem.length === 0) {
    return { kind, text: `no agent ${where} builds for ${build.system} (an agent started with --system ${build.system} would)`, unmatchedSystem: build.system, unmatchedTags: [], unmatchedFeatures: [] };
  }
  const unmatchedTags = build.tags.filter((t) => !ofSystem.some((a) => tagsMatch([t], a.tags)));
  const unmatchedFeatures = build.requiredFeatures.filter((f) => !ofSystem.some((a) => a.features.supported.includes(f)));
  const lacks = [
    ...unmatchedTags.map((t) => `tag ${t.key}=${t.value}`),
    ...unmatchedFeatures.map((f) => `system feature ${f}`),
  ];
  if (lacks.length > 0) {
    const flags = [...unmatchedTags.map((t) => `--tag ${t.key}=${t.value}`), ...unmatchedFeatures.map((f) => `--system-feature ${f}`)].join(' ');
    return { kind, text: `no agent ${where} for ${build.system} offers ${lacks.join(', ')} (an agent started with ${flags} would take it)`, unmatchedTags, unmatchedFeatures };
  }
  // Agents with its tags and every feature it requires, that still do not match: each is
  // reserved by a mandatory feature the build does not require.
  const reserved = ofSystem.filter((a) => tagsMatch(build.tags, a.tags) && build.requiredFeatures.every((f) => a.features.supported.includes(f)));
  if (reserved.length > 0) {
    const mandatory = [...new Set(reserved.flatMap((a) => a.features.mandatory.filter((f) => !build.requiredFeatures.includes(f))))].sort();
    return { kind, text: `the agents ${where} that offer what it needs are reserved for builds that require ${mandatory.join(', ')} (mandatory features)`, unmatchedTags: [], unmatchedFeatures: [] };
  }
  return { kind, text: `no single agent ${where} offers system ${build.system} with all its tags and features (each is offered by some agent)`, unmatchedTags: [], unmatchedFeatures: [] };
}
