// GetBuild's account of why a scheduled build waits: the scheduler's reason, from the
// agents whose streams this replica holds (agent streams live in each replica's memory;
// the database does not know who is connected elsewhere), as protobuf.
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { WaitKind, WaitReasonSchema, type WaitReason as WaitReasonProto } from '../../gen/kiln/v1/types_pb.js';
import type { Database } from '../db/connection.js';
import type { BuildRecord } from '../scheduler/build-queries.js';
import { excludedAgentsOf, explainWait, missingInputsOf, type ConnectedAgent, type WaitKind as Kind, type WaitReason } from '../scheduler/wait-reasons.js';
import type { AgentSessions } from './agent-sessions.js';

const KINDS: Record<Kind, WaitKind> = {
  'missing-inputs': WaitKind.MISSING_INPUTS,
  'retry-backoff': WaitKind.RETRY_BACKOFF,
  'no-matching-agent': WaitKind.NO_MATCHING_AGENT,
  'agents-unavailable': WaitKind.AGENTS_UNAVAILABLE,
  'free-slot': WaitKind.FREE_SLOT,
};

function connectedAgents(sessions: AgentSessions): ConnectedAgent[] {
  return sessions.all().map((s) => ({ agentId: s.agentId, systems: s.systems, tags: s.tags, features: s.features, available: s.active && !s.draining }));
}

/** Why the build waits; undefined unless it is scheduled. */
export async function waitReasonOf(db: Database, sessions: AgentSessions, build: BuildRecord): Promise<WaitReason | undefined> {
  if (build.state !== 'scheduled') return undefined;
  const missing = build.waitingInputs > 0 ? await missingInputsOf(db, build.id) : [];
  return explainWait(build, missing, connectedAgents(sessions), await excludedAgentsOf(db, build.id), 'replica', new Date());
}

export function waitReasonToProto(w: WaitReason | undefined): WaitReasonProto | undefined {
  if (!w) return undefined;
  return create(WaitReasonSchema, {
    kind: KINDS[w.kind],
    text: w.text,
    missingInputs: w.missingInputs.map((m) => ({ path: m.path, buildId: m.buildId ?? '', upstreamAsked: m.upstreamAsked })),
    missingInputCount: w.missingInputCount,
    notBefore: w.notBefore ? timestampFromDate(w.notBefore) : undefined,
    unmatchedSystem: w.unmatchedSystem ?? '',
    unmatchedTags: w.unmatchedTags,
    unmatchedFeatures: w.unmatchedFeatures,
    agentsSeenBy: w.agentsSeenBy,
    matchingAgents: w.matchingAgents,
  });
}
