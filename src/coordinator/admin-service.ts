// AdminService: translates between protobuf messages and kiln's domain, nothing more.
import type { DerivationsByPath } from './derivations-by-path.js';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import { AdminService, ExistingOutputs, SubmitBuildResponseSchema, type SubmitBuildRequest, type SubmitBuildResponse } from '../../gen/kiln/v1/admin_pb.js';
import { AgentSchema, BuildSchema, EventSchema, type Agent, type Build, type Event } from '../../gen/kiln/v1/types_pb.js';
import { listEvents, type EventRecord } from '../hooks/event-queries.js';
import { retryDeliveries } from '../hooks/deliveries.js';
import type { Database } from '../db/connection.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { invalidArgument, KilnError } from '../errors.js';
import type { BuildRecord } from '../scheduler/build-queries.js';
import { STATE_TO_PROTO, stateFromProto } from './build-states.js';
import { dashboardAdmin } from './dashboard-admin.js';
import { getBuild, listBuilds } from '../scheduler/build-queries.js';
import { cancelBuild, retryBuild, setBuildPriority, updateBuildTags } from '../scheduler/build-changes.js';
import { submitBuild, submitBuilds, type SubmitBuildInput, type SubmitBuildResult, type UpstreamHas } from '../scheduler/submission.js';
import { createAgent, createAgentPassword, getAgent, listAgents, setAgentActive, type AgentRecord } from './agent-registry.js';
import type { AgentSignal } from './farm-signals.js';
import { sourceUploads } from './source-uploads.js';
import { registrationTokensAdmin } from './registration-tokens-admin.js';
import type { AgentSessions } from './agent-sessions.js';
import { connectionToProto, queueStatus } from './queue-status.js';
import { waitReasonOf, waitReasonToProto } from './wait-status.js';
import type { WaitReason } from '../scheduler/wait-reasons.js';
import { buildTraceId } from '../telemetry/build-trace.js';
import type { BuildTelemetry } from '../telemetry/build-telemetry.js';
import { cacheAdmin } from './cache-admin.js';
import { qaAdmin } from './qa-admin.js';
import type { Upstream } from '../cache/upstreams/upstream-list.js';
import { buildLogs } from './build-logs.js';
import type { LogStorage } from '../storage/log-storage.js';
import type { Logger } from '../logger.js';
import type { RetentionRules } from '../substitutes/retention.js';
import type { PathSigner } from '../substitutes/narinfo-signer.js';
import { restoreDerivationNars } from '../substitutes/derivation-nar.js';
import type { RestoreDerivationFiles } from '../scheduler/derivation-files.js';
import type { InputLimits } from '../protocol/limits.js';
import { requestCheck } from '../scheduler/reproducibility.js';
import { reproducibilityOf } from './reproducibility-admin.js';

export function buildToProto(b: BuildRecord, wait?: WaitReason): Build {
  return create(BuildSchema, {
    id: b.id,
    derivationPath: b.derivationPath,
    system: b.system,
    priority: b.priority,
    state: STATE_TO_PROTO[b.state],
    tags: b.tags,
    outputs: b.outputs,
    inputDerivations: b.inputDerivations,
    agentId: b.agentId ?? '',
    createdAt: timestampFromDate(b.createdAt),
    updatedAt: timestampFromDate(b.updatedAt),
    endedAt: b.endedAt ? timestampFromDate(b.endedAt) : undefined,
    derivedPriority: b.derivedPriority,
    attemptCount: b.attemptCount,
    timeoutSeconds: b.timeoutSeconds,
    maxSilentSeconds: b.maxSilentSeconds,
    notBefore: b.notBefore ? timestampFromDate(b.notBefore) : undefined,
    waitingInputs: b.waitingInputs,
    requiredFeatures: b.requiredFeatures,
    waitReason: waitReasonToProto(wait),
    failureReason: b.failureReason ?? '',
    failedInput: b.failedInput ?? '',
    failedInputBuildId: b.failedInputBuild ?? '',
    checkOfBuildId: b.checkOf ?? '',
    successReason: b.successReason ?? '',
    attempts: b.attempts.map((a) => ({
      attempt: a.attempt,
      agentId: a.agentId,
      allocatedAt: timestampFromDate(a.allocatedAt),
      startedAt: a.startedAt ? timestampFromDate(a.startedAt) : undefined,
      endedAt: a.endedAt ? timestampFromDate(a.endedAt) : undefined,
      outcome: a.outcome ?? '',
      message: a.message,
      logSize: BigInt(a.logSize ?? 0),
      traceId: buildTraceId(b.id, a.attempt),
    })),
  });
}

export function agentToProto(a: AgentRecord, sessions?: AgentSessions): Agent {
  return create(AgentSchema, {
    id: a.id,
    name: a.name,
    tags: a.tags,
    active: a.active,
    passwordCount: a.passwordCount,
    createdAt: timestampFromDate(a.createdAt),
    connection: connectionToProto(sessions?.get(a.id)),
  });
}

export function eventToProto(e: EventRecord): Event {
  return create(EventSchema, {
    id: BigInt(e.id),
    type: e.type,
    buildId: e.buildId ?? '',
    agentId: e.agentId ?? '',
    payloadJson: JSON.stringify(e.payload),
    createdAt: timestampFromDate(e.createdAt),
    deliveries: e.deliveries.map((d) => ({ ...d, runAfter: timestampFromDate(d.runAfter) })),
  });
}

/** What the admin service tells the rest of the coordinator about its changes. */
export interface AdminNotifications {
  /** Builds were changed in a way that may make work available. */
  buildsChanged(): void;
  /** Builds were submitted (one wake-up for all of them). */
  buildsSubmitted(buildIds: string[]): void;
  /** A build was canceled; an agent holding it should stop it. */
  buildCanceled(buildId: string, agentId: string | null): void;
  /** Tells an agent something, through whichever coordinator holds its stream. */
  toAgent(signal: AgentSignal): Promise<void>;
  /** Hook deliveries were made due again. */
  eventsRetried(): void;
}

function submission(req: SubmitBuildRequest, farm: { submitMissingInputs: boolean }): SubmitBuildInput {
  if (!(req.existingOutputs in ExistingOutputs)) throw invalidArgument(`existing_outputs ${req.existingOutputs} is not one of UNSPECIFIED, KILN, UPSTREAM`);
  const upstream = req.existingOutputs === ExistingOutputs.UPSTREAM;
  return {
    derivationPath: req.derivationPath,
    derivations: req.derivations.map((d) => ({ path: d.path, text: d.text })),
    buildId: req.buildId || undefined,
    priority: req.priority,
    tags: req.tags.map(({ key, value }) => ({ key, value })),
    ignoreIfOutputExists: req.ignoreIfOutputExists || req.existingOutputs !== ExistingOutputs.UNSPECIFIED,
    ignoreIfUpstreamHasOutputs: upstream,
    timeoutSeconds: req.timeoutSeconds,
    maxSilentSeconds: req.maxSilentSeconds,
    submitMissingInputs: farm.submitMissingInputs,
    checkReproducible: { agents: req.checkReproducible, byTag: req.checkReproducibleBy },
  };
}

function submitResponse(r: Omit<SubmitBuildResult, 'created'>): SubmitBuildResponse {
  return create(SubmitBuildResponseSchema, { build: r.build && buildToProto(r.build), existing: r.existing, availableUpstream: r.availableUpstream });
}

export function adminService(
  db: Database,
  storage: NarStorage,
  farm: { submitMissingInputs: boolean; retention: RetentionRules; log: Logger; keyFingerprint: string; limits?: InputLimits; byPath?: DerivationsByPath; sign?: PathSigner; upstreamHas?: UpstreamHas; upstreams?: readonly Upstream[]; beforeUnlink?: () => Promise<void> },
  notify: AdminNotifications,
  live: { sessions: AgentSessions; telemetry?: BuildTelemetry; logs: LogStorage },
): ServiceImpl<typeof AdminService> {
  const restoreDerivationFiles: RestoreDerivationFiles = (tx, roots) => restoreDerivationNars(tx, storage, roots, farm.sign);
  return {
    ...buildLogs({ db, logs: live.logs }),
    ...sourceUploads({ db, storage, sign: farm.sign, sourceStored: () => notify.buildsChanged(), telemetry: live.telemetry }),
    ...queueStatus({ db, sessions: live.sessions }),
    ...cacheAdmin({ db, storage, retention: farm.retention, log: farm.log, keyFingerprint: farm.keyFingerprint, beforeUnlink: farm.beforeUnlink }),
    ...registrationTokensAdmin(db),
    ...qaAdmin({ db, storage, sign: farm.sign, upstreams: farm.upstreams ?? [], submitted: (ids) => notify.buildsSubmitted(ids) }),
    ...dashboardAdmin(db),
    async submitBuild(req) {
      const startedAt = performance.now();
      const input = submission(req, farm);
      const result = await submitBuild(db, restoreDerivationFiles, farm.byPath ? await farm.byPath(input) : input, farm.limits, farm.upstreamHas);
      live.telemetry?.submitted(result.created, startedAt);
      notify.buildsSubmitted(result.created);
      return submitResponse(result);
    },
    async submitBuilds(req) {
      const inputs = req.builds.map((b) => submission(b, farm));
      const result = await submitBuilds(db, restoreDerivationFiles, farm.byPath ? await Promise.all(inputs.map(farm.byPath)) : inputs, farm.limits, farm.upstreamHas);
      notify.buildsSubmitted(result.created);
      return { builds: result.builds.map(submitResponse) };
    },
    async getBuild(req, ctx) {
      const build = await getBuild(db, req.id);
      const reproducibility = await reproducibilityOf(db, storage, build.id, ctx.signal);
      return { build: buildToProto(build, await waitReasonOf(db, live.sessions, build)), reproducibility };
    },
    async checkBuild(req, ctx) {
      const effects = await db.transaction((tx) => requestCheck(tx, req.buildId, { agents: req.agents, byTag: req.byTag }));
      notify.buildsSubmitted(effects.submitted);
      const build = await getBuild(db, req.buildId);
      return { build: buildToProto(build), reproducibility: await reproducibilityOf(db, storage, build.id, ctx.signal) };
    },
    async listBuilds(req) {
      const page = await listBuilds(
        db,
        {
          states: req.states.map(stateFromProto),
          tags: req.tags.map(({ key, value }) => ({ key, value })),
          derivationPath: req.derivationPath || undefined,
          system: req.system || undefined,
          nameContains: req.nameContains || undefined,
        },
        { size: req.pageSize, token: req.pageToken, newestFirst: req.newestFirst, withoutInputs: req.withoutInputs },
      );
      return { builds: page.builds.map((b) => buildToProto(b)), nextPageToken: page.nextToken };
    },
    async cancelBuild(req) {
      const before = await getBuild(db, req.id);
      const build = await cancelBuild(db, req.id);
      if (before.state !== 'canceled') notify.buildCanceled(build.id, before.agentId);
      return { build: buildToProto(build) };
    },
    async setBuildPriority(req) {
      const build = await setBuildPriority(db, req.id, req.priority);
      notify.buildsChanged();
      return { build: buildToProto(build) };
    },
    async updateBuildTags(req) {
      const set = req.set.map(({ key, value }) => ({ key, value }));
      const build = await updateBuildTags(db, req.id, set, req.removeKeys);
      notify.buildsChanged();
      return { build: buildToProto(build) };
    },
    async createAgent(req) {
      const agent = await createAgent(db, { name: req.name, tags: req.tags.map(({ key, value }) => ({ key, value })) });
      return { agent: agentToProto(agent) };
    },
    async createAgentPassword(req) {
      return { password: await createAgentPassword(db, req.agentId) };
    },
    async listAgents() {
      return { agents: (await listAgents(db)).map((a) => agentToProto(a, live.sessions)) };
    },
    async listEvents(req) {
      const page = await listEvents(
        db,
        { types: [...req.types], buildId: req.buildId || undefined, deliveryStates: [...req.deliveryStates] },
        { size: req.pageSize, token: req.pageToken },
      );
      return { events: page.events.map(eventToProto), nextPageToken: page.nextToken };
    },
    async retryEvent(req) {
      const retried = await retryDeliveries(db, Number(req.id), req.hook || undefined);
      if (retried === 0) throw new KilnError('failed_precondition', `event ${req.id} has no parked or pending delivery${req.hook ? ` for hook ${req.hook}` : ''} to retry`);
      notify.eventsRetried();
      return { retried };
    },
    async retryBuild(req) {
      const build = await retryBuild(db, restoreDerivationFiles, req.id);
      notify.buildsChanged();
      return { build: buildToProto(build) };
    },
    async drainAgent(req) {
      await getAgent(db, req.agentId);
      await notify.toAgent({ agentId: req.agentId, kind: 'drain' });
      return {};
    },
    async setAgentActive(req) {
      const agent = await setAgentActive(db, req.agentId, req.active);
      await notify.toAgent({ agentId: req.agentId, kind: 'set-active', active: req.active });
      if (req.active) notify.buildsChanged();
      return { agent: agentToProto(agent) };
    },
  };
}
