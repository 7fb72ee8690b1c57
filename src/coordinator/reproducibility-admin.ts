// A build's reproducibility check (QA) as GetBuild and CheckBuild give it: protobuf <->
// domain only; the rules are in scheduler/reproducibility.ts, the comparison in qa/.
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { ReproducibilitySchema, ReproducibilityState, type Reproducibility } from '../../gen/kiln/v1/admin_pb.js';
import type { Database } from '../db/connection.js';
import type { ReproducibilityState as DbState } from '../db/schema.js';
import { checkNarUrl, checkReport, type CheckReport } from '../qa/check-report.js';
import type { NarStorage } from '../storage/nar-storage.js';

const STATE: Record<DbState, ReproducibilityState> = {
  pending: ReproducibilityState.PENDING,
  reproducible: ReproducibilityState.REPRODUCIBLE,
  unreproducible: ReproducibilityState.UNREPRODUCIBLE,
  failed: ReproducibilityState.FAILED,
};

export function reproducibilityToProto(buildId: string, r: CheckReport): Reproducibility {
  return create(ReproducibilitySchema, {
    state: STATE[r.state],
    agents: r.wanted,
    byTag: r.byTag,
    message: r.message,
    decidedAt: r.decidedAt ? timestampFromDate(r.decidedAt) : undefined,
    checkBuildIds: r.checkBuilds,
    outputs: r.outputs.map((o) => ({
      name: o.name,
      path: o.path,
      reproducible: o.reproducible,
      differencesError: o.differencesError,
      results: o.results.map((res) => ({
        position: res.position,
        buildId: res.checkBuildId,
        agentId: res.agentId ?? '',
        tagValue: res.tagValue,
        narHash: res.narHash,
        narSize: BigInt(res.narSize),
        narUrl: checkNarUrl(buildId, res.position, o.name),
      })),
      differences: o.differences.map((d) => ({
        path: d.path,
        versions: d.versions.map((v) => ({
          position: v.position,
          type: v.type,
          size: BigInt(v.size),
          sha256: v.sha256,
          firstDifference: BigInt(v.firstDifference ?? -1),
          excerpt: v.excerpt ?? '',
        })),
      })),
    })),
  });
}

/** The build's check for GetBuild, or undefined when none was asked for. */
export async function reproducibilityOf(db: Database, storage: NarStorage, buildId: string, signal: AbortSignal): Promise<Reproducibility | undefined> {
  const report = await checkReport(db, storage, buildId, signal);
  return report && reproducibilityToProto(buildId, report);
}
