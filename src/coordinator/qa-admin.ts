// AdminService's QA calls: challenges against other caches, and fixed-output re-checks.
// Protobuf <-> the qa/ domain, nothing more.
import { create } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { ChallengeVerdict, FixedOutputCheckOutcome, FixedOutputCheckSchema, type AdminService, type FixedOutputCheck } from '../../gen/kiln/v1/admin_pb.js';
import type { Upstream } from '../cache/upstreams/upstream-list.js';
import { invalidArgument } from '../errors.js';
import { challengeCaches, type Verdict } from '../qa/challenge.js';
import { listFodChecks, submitFodChecks, type FodCheckDeps, type FodCheckOutcome, type FodCheckRecord } from '../qa/fod-checks.js';

const VERDICTS: Record<Verdict, ChallengeVerdict> = {
  match: ChallengeVerdict.MATCH,
  mismatch: ChallengeVerdict.MISMATCH,
  missing: ChallengeVerdict.MISSING,
  error: ChallengeVerdict.ERROR,
};

const OUTCOMES: Record<FodCheckOutcome, FixedOutputCheckOutcome> = {
  pending: FixedOutputCheckOutcome.PENDING,
  passed: FixedOutputCheckOutcome.PASSED,
  failed: FixedOutputCheckOutcome.FAILED,
  canceled: FixedOutputCheckOutcome.CANCELED,
};

function outcomeFromProto(o: FixedOutputCheckOutcome): FodCheckOutcome {
  const found = (Object.entries(OUTCOMES) as [FodCheckOutcome, FixedOutputCheckOutcome][]).find(([, p]) => p === o);
  if (!found) throw invalidArgument(`outcomes: ${o} is not one of PENDING, PASSED, FAILED, CANCELED`);
  return found[0];
}

function checkToProto(c: FodCheckRecord): FixedOutputCheck {
  return create(FixedOutputCheckSchema, {
    buildId: c.buildId,
    derivationPath: c.derivationPath,
    requestedAt: timestampFromDate(c.requestedAt),
    finishedAt: c.finishedAt ? timestampFromDate(c.finishedAt) : undefined,
    outcome: OUTCOMES[c.outcome],
    message: c.message,
  });
}

export interface QaAdminDeps extends FodCheckDeps {
  upstreams: readonly Upstream[];
  /** Checks were submitted: the dispatcher should look. */
  submitted(buildIds: string[]): void;
}

export function qaAdmin(deps: QaAdminDeps): Pick<ServiceImpl<typeof AdminService>, 'challengeCaches' | 'checkFixedOutputs' | 'listFixedOutputChecks'> {
  return {
    async challengeCaches(req, ctx) {
      const report = await challengeCaches(deps.db, deps.upstreams, { caches: req.caches, tags: req.tags.map(({ key, value }) => ({ key, value })), limit: req.limit }, ctx.signal);
      return {
        paths: report.paths.map((p) => ({
          ...p,
          narSize: BigInt(p.narSize),
          verdicts: p.verdicts.map((v) => ({ ...v, verdict: VERDICTS[v.verdict], narHash: v.narHash ?? '', narSize: BigInt(v.narSize ?? 0) })),
        })),
        summaries: report.summaries,
      };
    },
    async checkFixedOutputs(req) {
      const submitted = await submitFodChecks(
        deps,
        { tags: req.tags.map(({ key, value }) => ({ key, value })), name: req.name || undefined, olderThanMs: Number(req.olderThanSeconds) * 1000, limit: req.limit },
        { priority: req.priority },
      );
      deps.submitted(submitted.checks.map((c) => c.buildId));
      return { checks: submitted.checks.map(checkToProto), alreadyChecking: submitted.alreadyChecking };
    },
    async listFixedOutputChecks(req) {
      const checks = await listFodChecks(deps.db, {
        derivationPaths: req.derivationPaths,
        outcomes: req.outcomes.map(outcomeFromProto),
        latestOnly: req.latestOnly,
        limit: req.pageSize,
      });
      return { checks: checks.map(checkToProto) };
    },
  };
}
