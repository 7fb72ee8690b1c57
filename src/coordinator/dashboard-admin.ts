// AdminService calls made for the dashboard: the builds a build's page links to, and the
// farm's history for its charts. Protobuf <-> domain, and one answer of the history shared
// by the pages that ask while it is computed (it scans the period's builds and attempts).
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import type { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import type { Database } from '../db/connection.js';
import { buildRelations, type RelatedBuild } from '../scheduler/build-relations.js';
import { farmHistory, type FarmHistory } from '../scheduler/queue-history.js';
import { STATE_TO_PROTO } from './build-states.js';

const related = (r: RelatedBuild) => ({ derivationPath: r.derivationPath, buildId: r.buildId ?? '', state: r.state ? STATE_TO_PROTO[r.state] : BuildState.UNSPECIFIED });

export function dashboardAdmin(db: Database): Pick<ServiceImpl<typeof AdminService>, 'getBuildRelations' | 'getFarmHistory'> {
  // Pages that ask while an answer is being computed share it (each page asks every 30 s).
  const running = new Map<number, Promise<FarmHistory>>();
  const history = (minutes: number): Promise<FarmHistory> => {
    const shared = running.get(minutes);
    if (shared) return shared;
    const answer = farmHistory(db, minutes).finally(() => running.delete(minutes));
    running.set(minutes, answer);
    return answer;
  };
  return {
    async getBuildRelations(req) {
      const r = await buildRelations(db, req.id, req.dependantsLimit);
      return { inputs: r.inputs.map(related), dependants: r.dependants.map(related), dependantCount: r.dependantCount };
    },
    async getFarmHistory(req) {
      const h = await history(req.minutes);
      return {
        stepSeconds: h.stepSeconds,
        queueDepth: h.queueDepth.map((p) => ({ at: timestampFromDate(p.at), scheduled: p.scheduled, allocated: p.allocated, started: p.started })),
        finished: h.finished.map((f) => ({ minute: timestampFromDate(f.minute), succeeded: f.succeeded, failed: f.failed, canceled: f.canceled })),
        agentSlots: h.agentSlots,
      };
    },
  };
}
