// AdminService's read-only view of the farm now, for the dashboard: the queue by state
// and system, and what connected agents last said about themselves.
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import type { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import { AgentConnectionSchema, type AgentConnection } from '../../gen/kiln/v1/types_pb.js';
import { STATE_TO_PROTO } from './build-states.js';
import type { Database } from '../db/connection.js';
import { readyBySystem, unfinishedByStateAndSystem } from '../scheduler/queue-summary.js';
import type { AgentSession, AgentSessions } from './agent-sessions.js';

export function queueStatus(deps: { db: Database; sessions: AgentSessions }): Pick<ServiceImpl<typeof AdminService>, 'getQueueSummary'> {
  return {
    async getQueueSummary() {
      const offers = deps.sessions
        .all()
        .filter((s) => s.active && !s.draining)
        .map((s) => ({ systems: s.systems, tags: s.tags, features: s.features }));
      const [counts, ready] = [await unfinishedByStateAndSystem(deps.db), await readyBySystem(deps.db, offers)];
      return {
        counts: counts.map((c) => ({ state: STATE_TO_PROTO[c.state], system: c.system, count: c.count })),
        ready: ready.map((r) => ({ system: r.system, count: r.count, oldestCreatedAt: timestampFromDate(r.oldestCreatedAt), matchingConnected: r.matchingConnected })),
        connectedAgents: deps.sessions.all().length,
      };
    },
  };
}

/** A connected agent's stream as ListAgents shows it; undefined when not connected here. */
export function connectionToProto(session: AgentSession | undefined): AgentConnection | undefined {
  if (!session) return undefined;
  const status = session.status();
  return create(AgentConnectionSchema, {
    systems: session.systems,
    maxParallelBuilds: session.maxParallel,
    freeSlots: status.freeSlots,
    holding: status.holding,
    loadAverage: status.loadAverage,
    cpuCount: session.cpuCount,
    freeDiskBytes: BigInt(status.freeDiskBytes ?? 0),
    draining: session.draining,
    lastSeen: timestampFromDate(new Date(session.lastSeen)),
    systemFeatures: session.features.supported,
    mandatoryFeatures: session.features.mandatory,
  });
}
