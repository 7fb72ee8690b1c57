// AgentService.Connect: the long-lived control stream of one agent. Reads the agent's
// messages in the background and yields the coordinator's (from the session's outbox)
// until either side ends. The agent must say Hello first.
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type HandlerContext } from '@connectrpc/connect';
import {
  BuildResult,
  ConnectResponseSchema,
  ReportKind,
  SetupFailureReason,
  WelcomeSchema,
  type BuildFinished,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
} from '../../gen/kiln/v1/agent_pb.js';
import type { Database } from '../db/connection.js';
import { KilnError } from '../errors.js';
import type { NarStorage } from '../storage/nar-storage.js';
import type { PathSigner } from '../substitutes/narinfo-signer.js';
import { isLastingFailure } from '../db/transient.js';
import type { Logger } from '../logger.js';
import {
  recordFinished,
  recordSetupFailure,
  recordStarted,
  reconcileHeldBuilds,
  type FinishOutcome,
  type ReportEffects,
  type ReportPolicy,
  type SetupFailureKind,
} from '../scheduler/build-reports.js';
import { validateAgentFeatures } from '../scheduler/placement.js';
import { validateTags } from '../scheduler/tags.js';
import type { InputLimits } from '../protocol/limits.js';
import type { SizeLimits } from '../protocol/size-limits.js';
import { getAgent } from './agent-registry.js';
import { AgentSession, type AgentSessions, type LoadLimits } from './agent-sessions.js';
import { authenticatedAgent } from './auth.js';
import { refusalError, toConnectError } from './connect-errors.js';
import { receiveInlineOutput } from './upload-receiver.js';
import type { BuildEvents } from './build-events.js';
import type { StandaloneEvents } from './standalone-events.js';
import { storableText } from '../db/storable-text.js';
import type { Dispatcher } from './dispatcher.js';
import { UNTRACED, type BuildTelemetry } from '../telemetry/build-telemetry.js';
import { ATTR } from '../telemetry/build-trace.js';

export interface AgentStreamDeps {
  db: Database;
  /** Where outputs sent inline with their report are stored. */
  storage: NarStorage;
  /** Signs each committed path's narinfo (upload-receiver.ts). */
  sign?: PathSigner;
  /** The largest output NAR (checked on inline outputs too) and log taken; told to agents in Welcome. */
  sizeLimits: SizeLimits;
  sessions: AgentSessions;
  dispatcher: Dispatcher;
  log: Logger;
  version: string;
  /** Retries, and how long an agent's builds wait for it after its stream ends. */
  reports: ReportPolicy;
  /** When an agent takes no more builds, whatever its free slots. */
  loadLimits: LoadLimits;
  heartbeatIntervalMs: number;
  /** Where agents substitute inputs from; known once the server listens. */
  cache: () => { url: string; publicKey: string };
  /** Upstream caches agents substitute from after kiln's, in priority order. */
  substituters?: { url: string; publicKeys: string[] }[];
  events: BuildEvents;
  /** Where agent-connected and agent-lost are written (retried through an outage). */
  agentEvents: StandaloneEvents;
  /** Traces and counts reports. */
  telemetry?: BuildTelemetry;
  /** What a Hello may carry (tags per agent). */
  limits: InputLimits;
}

const OUTCOMES: Partial<Record<BuildResult, FinishOutcome>> = {
  [BuildResult.SUCCESS]: 'success',
  [BuildResult.FAILURE]: 'failure',
  [BuildResult.TIMEOUT]: 'timeout',
  [BuildResult.SILENT_TIMEOUT]: 'silent-timeout',
  [BuildResult.INFRASTRUCTURE]: 'infrastructure',
  [BuildResult.OUTPUT_TOO_LARGE]: 'output-too-large',
  [BuildResult.LOG_TOO_LARGE]: 'log-too-large',
};

const SETUP_KINDS: Record<SetupFailureReason, SetupFailureKind> = {
  [SetupFailureReason.UNSPECIFIED]: 'other',
  [SetupFailureReason.MISSING_INPUTS]: 'missing-inputs',
  [SetupFailureReason.COULD_NOT_DELETE_OUTPUTS]: 'could-not-delete-outputs',
  [SetupFailureReason.OTHER]: 'other',
};

export function agentStream(deps: AgentStreamDeps) {
  return async function* connect(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse> {
    const agentId = ctx.values.get(authenticatedAgent)!;
    const log = deps.log.child({ agentId });
    const iterator = requests[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done || first.value.message.case !== 'hello') {
      throw new ConnectError('the first message on the control stream must be Hello', Code.InvalidArgument);
    }
    const hello = first.value.message.value;
    // Thrown inside the stream, past the error interceptor: a refused Hello keeps its status.
    const session = await openSession(deps, agentId, hello).catch((err: unknown) => {
      throw toConnectError(err, log, 'AgentService.Connect');
    });
    const { abandon, effects } = await reconcileHeldBuilds(deps.db, deps.reports, agentId, hello.heldBuildIds);
    deps.dispatcher.applyEffects(effects);
    for (const id of hello.heldBuildIds) if (!abandon.includes(id)) session.holding.add(id);
    deps.sessions.add(session);
    log.info({ systems: session.systems, features: session.features, maxParallel: session.maxParallel, holding: session.holding.size }, 'agent connected');
    agentEvent(deps, 'agent-connected', agentId, {
      systems: session.systems.map((s) => storableText(s, 200)),
      features: session.features,
      maxParallel: session.maxParallel,
      holding: [...session.holding],
      version: storableText(hello.version, 200),
    });

    session.outbox.push(
      create(ConnectResponseSchema, {
        message: {
          case: 'welcome',
          value: create(WelcomeSchema, {
            agentId,
            coordinatorVersion: deps.version,
            abandonBuildIds: abandon,
            heartbeatIntervalMs: deps.heartbeatIntervalMs,
            cacheUrl: deps.cache().url,
            cachePublicKey: deps.cache().publicKey,
            substituters: deps.substituters ?? [],
            maxOutputBytes: BigInt(deps.sizeLimits.maxOutputBytes),
            maxLogBytes: BigInt(deps.sizeLimits.maxLogBytes),
          }),
        },
      }),
    );
    deps.dispatcher.poke();

    // Read the agent's messages until its side ends. A refused report is answered on the
    // stream; a message out of protocol, or an unexpected failure, ends it.
    void (async () => {
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        session.lastSeen = Date.now();
        await handleMessage(deps, session, next.value, log);
      }
    })().then(
      () => session.outbox.end(),
      (err: unknown) => session.outbox.end(toConnectError(err, log, 'AgentService.Connect')),
    );

    try {
      for await (const message of session.outbox) yield message;
    } finally {
      session.outbox.end();
      // Its builds' leases are no longer renewed: they run out unless it comes back.
      if (deps.sessions.remove(session)) {
        log.info({ holding: session.holding.size }, 'agent disconnected');
        agentEvent(deps, 'agent-lost', agentId, { holding: [...session.holding] });
      }
    }
  };
}

async function openSession(deps: AgentStreamDeps, agentId: string, hello: Hello): Promise<AgentSession> {
  const agent = await getAgent(deps.db, agentId);
  if (hello.systems.length === 0) throw new ConnectError('Hello names no systems the agent builds for', Code.InvalidArgument);
  if (hello.maxParallelBuilds < 1 || hello.maxParallelBuilds > 1024) {
    throw new ConnectError(`Hello.max_parallel_builds ${hello.maxParallelBuilds} is outside 1..1024`, Code.InvalidArgument);
  }
  const offered = validateTags(hello.tags.map(({ key, value }) => ({ key, value })), 'Hello', deps.limits.tagsPerAgent, 'tagsPerAgent');
  // Tags recorded for the agent win over the ones it offers for the same key.
  const tags = [...agent.tags, ...offered.filter((t) => !agent.tags.some((a) => a.key === t.key))];
  const features = validateAgentFeatures({ supported: [...hello.systemFeatures], mandatory: [...hello.mandatoryFeatures] }, 'Hello');
  const session = new AgentSession(agentId, [...hello.systems], tags, hello.maxParallelBuilds, deps.loadLimits, hello.cpuCount, features);
  // A deactivated agent may connect (and report what it holds) but is given nothing.
  session.active = agent.active;
  return session;
}

async function handleMessage(deps: AgentStreamDeps, session: AgentSession, request: ConnectRequest, log: Logger): Promise<void> {
  const { db, dispatcher } = deps;
  const m = request.message;
  const traced = (kind: string, buildId: string, record: () => Promise<void>) =>
    deps.telemetry ? deps.telemetry.report(kind, buildId, session.agentId, record) : record();
  switch (m.case) {
    case 'hello':
      throw new ConnectError('Hello may only be the first message', Code.InvalidArgument);
    case 'heartbeat':
      return;
    case 'loadReport':
      session.reportLoad(m.value);
      dispatcher.poke();
      return;
    case 'buildStarted':
      return traced('started', m.value.buildId, () =>
        answerReport(session, ReportKind.BUILD_STARTED, m.value.buildId, log, async () => {
          await recordStarted(db, session.agentId, m.value.buildId);
          deps.events.emit({ buildId: m.value.buildId, kind: 'started' });
        }),
      );
    case 'setupFailure':
      return traced('setup-failure', m.value.buildId, () =>
        answerReport(session, ReportKind.SETUP_FAILURE, m.value.buildId, log, async () => {
          const kind = SETUP_KINDS[m.value.reason] ?? 'other';
          const effects = await recordSetupFailure(db, deps.reports, session.agentId, m.value.buildId, {
            kind,
            missingInputs: [...m.value.missingInputs],
            message: m.value.message,
          });
          if (!effects.repeated) deps.telemetry?.outcome(kind === 'missing-inputs' && !effects.agentFault ? 'missing-inputs' : 'setup-failure');
          if (effects.agentFault) {
            deps.telemetry?.agentFault(session.agentId);
            log.warn({ buildId: m.value.buildId, missingInputs: m.value.missingInputs }, effects.agentFault);
          }
          afterFinalReport(deps, session, m.value.buildId, effects);
        }, failUnrecordable(deps, session, m.value.buildId)),
      );
    case 'buildFinished':
      return traced('finished', m.value.buildId, () =>
        answerReport(session, ReportKind.BUILD_FINISHED, m.value.buildId, log, async () => {
          const outcome = OUTCOMES[m.value.result];
          if (!outcome) throw new ConnectError(`BuildFinished for ${m.value.buildId} has no result`, Code.InvalidArgument);
          if (outcome === 'success') await storeInlineOutputs(deps, session.agentId, m.value);
          const outputs = m.value.outputs.map((o) => ({ name: o.name, path: o.path, narHash: o.narHash, narSize: Number(o.narSize) }));
          const effects = await recordFinished(db, deps.reports, session.agentId, m.value.buildId, outcome, m.value.message, outputs);
          if (!effects.repeated) deps.telemetry?.outcome(outcome);
          afterFinalReport(deps, session, m.value.buildId, effects);
        }, failUnrecordable(deps, session, m.value.buildId)),
      );
    case undefined:
      throw new ConnectError('empty message on the control stream', Code.InvalidArgument);
  }
}

/**
 * Stores the outputs a success report carries inline (small ones: no UploadOutput call
 * each), before the report is taken: it is checked against what is stored. A bad one
 * refuses the report; the ones stored before it stay, as uploads would.
 */
async function storeInlineOutputs(deps: AgentStreamDeps, agentId: string, finished: BuildFinished): Promise<void> {
  const inline = finished.outputs.filter((o) => o.narLz4.length > 0);
  if (inline.length === 0) return;
  const telemetry = deps.telemetry ?? UNTRACED;
  const attributes = (name: string) => ({ [ATTR.buildId]: finished.buildId, [ATTR.agentId]: agentId, [ATTR.output]: name });
  const store = (o: (typeof inline)[number]) =>
    telemetry.uploadInline(attributes(o.name), async () => {
      const r = await receiveInlineOutput({ db: deps.db, storage: deps.storage, sign: deps.sign, maxOutputBytes: deps.sizeLimits.maxOutputBytes }, agentId, finished.buildId, o);
      return { result: r, bytes: r?.fileSize ?? 0 };
    });
  const received = await Promise.all(
    inline.map((o) =>
      store(o).catch((err: unknown) => {
        // Not a build the agent may upload for: a report sent again after its build was
        // taken (harmless), or not its build at all. Taking the report says which.
        if (err instanceof KilnError && err.kind === 'permission_denied') return undefined;
        throw err;
      }),
    ),
  );
  // Builds that waited for these outputs are ready: here and on every replica.
  if (received.some((r) => r && r.released.length > 0)) deps.dispatcher.workAvailable();
}

/**
 * Records one report. When kiln refuses it (not the agent's build, a state it cannot
 * be in, ...) the refusal is the answer, on a stream that stays up: ending the stream
 * would only make the agent reconnect and send the same report again, for ever. Other
 * failures (the database gone) still end the stream, so the agent resends later.
 */
async function answerReport(
  session: AgentSession,
  report: ReportKind,
  buildId: string,
  log: Logger,
  record: () => Promise<void>,
  /** For a final report kiln cannot record: ends the attempt as failed, saying why. */
  recordUnrecordable?: (why: string) => Promise<void>,
): Promise<void> {
  try {
    await record();
  } catch (err) {
    let refused = refusalError(err);
    if (!refused && isLastingFailure(err)) {
      // It would fail the same way each time the agent sent it again (for ever): refused,
      // and the attempt ends as a failure that says so, so that the build still ends.
      log.error({ err, buildId, report: ReportKind[report] }, 'a report could not be recorded; it is refused');
      const why = `the coordinator could not record the agent's report: ${(err as Error).message}`;
      await recordUnrecordable?.(why).catch((again: unknown) => log.error({ err: again, buildId }, 'the attempt could not be ended either'));
      refused = new ConnectError(why, Code.Internal);
    }
    if (!refused) throw err;
    log.warn({ buildId, report: ReportKind[report], code: Code[refused.code], err: refused.rawMessage }, 'report refused');
    acknowledge(session, buildId, { code: refused.code, message: refused.rawMessage, report });
  }
}

/** Ends the build's attempt as a failure (retried as the policy says) when its report cannot be recorded. */
function failUnrecordable(deps: AgentStreamDeps, session: AgentSession, buildId: string) {
  return async (why: string) => {
    const effects = await recordFinished(deps.db, deps.reports, session.agentId, buildId, 'failure', why, []);
    afterFinalReport(deps, session, buildId, effects, { acknowledged: false });
  };
}

/** An agent's stream came or went: an event for hooks, written even through a database outage (never a reason to fail the stream). */
function agentEvent(deps: AgentStreamDeps, type: 'agent-connected' | 'agent-lost', agentId: string, payload: Record<string, unknown>): void {
  deps.agentEvents.record({ type, agentId, payload });
}

/** A build's final report is recorded: the agent's slot is free, and the queue may have changed. */
function afterFinalReport(deps: AgentStreamDeps, session: AgentSession, buildId: string, effects: ReportEffects, opts = { acknowledged: true }): void {
  session.released(buildId);
  if (opts.acknowledged) acknowledge(session, buildId, undefined, effects.agentFault);
  if (!effects.requeued.includes(buildId)) deps.events.emit({ buildId, kind: 'finished' });
  deps.dispatcher.applyEffects(effects);
  deps.dispatcher.poke();
}

function acknowledge(session: AgentSession, buildId: string, refusal?: { code: Code; message: string; report: ReportKind }, warning = ''): void {
  session.outbox.push(create(ConnectResponseSchema, { message: { case: 'acknowledged', value: { buildId, refusal, warning } } }));
}
