// The agent: holds the control stream, runs assigned builds through its builder up to
// its slots, uploads outputs and logs, and reports. Lifecycle: running → draining (no
// new builds, finish the ones in hand) → stopped.
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError, createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { AgentService, BuildResult, SetupFailureReason, type AssignBuild } from '../../gen/kiln/v1/agent_pb.js';
import { AGENT_ID_HEADER, AGENT_PASSWORD_HEADER } from '../coordinator/auth.js';
import type { Logger } from '../logger.js';
import type { Tag } from '../scheduler/tags.js';
import type { Builder, BuildOutcome, CacheInfo } from './builders/builder.js';
import { ControlStream } from './control-stream.js';
import { inlineOutput, uploadLog, uploadOutput } from './uploader.js';
import { retryLaterReason } from './retry-later.js';
import { inSpan, traceAgentBuild, traceHeaders, type AgentBuildTrace } from '../telemetry/agent-telemetry.js';
import { ATTR } from '../telemetry/build-trace.js';

export const AGENT_VERSION = '0.1.0';
/** How long a draining agent waits for the coordinator to take its last reports. */
const DRAIN_REPORT_WAIT_MS = 30_000;

export interface AgentOptions {
  coordinatorUrl: string;
  agentId: string;
  password: string;
  systems: string[];
  maxParallel: number;
  tags: Tag[];
  /** Makes the builder once the coordinator has said where its cache is. */
  builder: (cache: CacheInfo) => Builder;
  /**
   * Time limits of this agent's own (as Nix's timeout and max-silent-time settings), in
   * seconds, zero for none: a build gets the stricter of these and the coordinator's.
   */
  limits?: { timeoutSeconds: number; maxSilentSeconds: number };
  log: Logger;
}

export type AgentState = 'starting' | 'running' | 'draining' | 'stopped';

interface RunningBuild {
  abort: AbortController;
  done: Promise<void>;
  trace: AgentBuildTrace;
}

export function agentClient(url: string, agentId: string, password: string): Client<typeof AgentService> {
  const credentials: Interceptor = (next) => (req) => {
    req.header.set(AGENT_ID_HEADER, agentId);
    req.header.set(AGENT_PASSWORD_HEADER, password);
    return next(req);
  };
  // HTTP/2 pings so a coordinator that vanished behind NAT is noticed in seconds.
  const transport = createGrpcTransport({ baseUrl: url, interceptors: [credentials, traceHeaders], pingIntervalMs: 10_000, pingTimeoutMs: 10_000 });
  return createClient(AgentService, transport);
}

/** The stricter of two time limits where zero means none. */
export function stricterLimit(a: number, b: number): number {
  return a && b ? Math.min(a, b) : a || b;
}

export class Agent {
  private state: AgentState = 'starting';
  private readonly running = new Map<string, RunningBuild>();
  private readonly stop = new AbortController();
  private readonly client: Client<typeof AgentService>;
  private readonly stream: ControlStream;
  private builder: Builder | undefined;
  private runLoop: Promise<void> | undefined;
  private markStopped!: () => void;
  private readonly stoppedPromise = new Promise<void>((resolve) => (this.markStopped = resolve));

  constructor(private readonly opts: AgentOptions) {
    this.client = agentClient(opts.coordinatorUrl, opts.agentId, opts.password);
    this.stream = new ControlStream({
      client: this.client,
      systems: opts.systems,
      maxParallel: opts.maxParallel,
      tags: opts.tags,
      version: AGENT_VERSION,
      log: opts.log,
      handlers: {
        heldBuilds: () => [...this.running.keys()],
        freeSlots: () => (this.state === 'running' ? Math.max(0, opts.maxParallel - this.running.size) : 0),
        onWelcome: (welcome) => {
          this.builder ??= opts.builder({ url: welcome.cacheUrl, publicKey: welcome.cachePublicKey });
          if (this.state === 'starting') this.state = 'running';
        },
        onAssign: (assign) => this.startBuild(assign),
        onCancel: (buildId, reason) => {
          const build = this.running.get(buildId);
          const note = () => opts.log.info({ buildId, reason }, 'build canceled by the coordinator');
          if (build) build.trace.within(note);
          else note();
          build?.abort.abort(new Error(`canceled: ${reason}`));
        },
        onDrain: () => {
          void this.drain();
        },
        onRefused: (buildId, refusal, report) => {
          // A success the coordinator would not take (outputs missing or not as uploaded)
          // must not leave the build started for ever: it ends as a failure that says why.
          if (report?.case !== 'buildFinished' || report.value.result !== BuildResult.SUCCESS) return;
          if (refusal.code === Code.PermissionDenied) return; // not this agent's build any more
          if (this.gaveBack(buildId, new ConnectError(refusal.message, refusal.code))) return;
          this.stream.report({
            case: 'buildFinished',
            value: { buildId, result: BuildResult.FAILURE, outputs: [], message: `the coordinator refused the build's success: ${refusal.message}` },
          });
        },
      },
    });
  }

  currentState(): AgentState {
    return this.state;
  }

  /** Builds in hand now. */
  holding(): string[] {
    return [...this.running.keys()];
  }

  isConnected(): boolean {
    return this.stream.connected;
  }

  start(): void {
    this.runLoop ??= this.stream.run(this.stop.signal);
  }

  /** Takes no new builds, waits for the ones in hand, then stops. */
  async drain(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'draining') return this.stopped;
    this.state = 'draining';
    this.opts.log.info({ holding: this.running.size }, 'draining: finishing the builds in hand, taking no more');
    this.stream.sendLoad();
    await Promise.all([...this.running.values()].map((b) => b.done));
    // The last reports must reach the coordinator, or it would count the builds lost.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.stream.whenSettled(), new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_REPORT_WAIT_MS)))]);
    clearTimeout(timer);
    await this.shutdown();
  }

  /** Resolves when the agent has stopped (shut down, or drained to the end). */
  get stopped(): Promise<void> {
    return this.stoppedPromise;
  }

  /** Stops now: running builds are aborted (the coordinator requeues them after the lease). */
  async shutdown(): Promise<void> {
    if (this.state === 'stopped') return this.stopped;
    this.state = 'stopped';
    for (const b of this.running.values()) b.abort.abort(new Error('agent stopping'));
    await Promise.all([...this.running.values()].map((b) => b.done));
    this.stop.abort();
    await this.runLoop;
    this.markStopped();
  }

  private startBuild(assign: AssignBuild): void {
    const log = this.opts.log.child({ buildId: assign.buildId });
    if (this.running.has(assign.buildId)) return; // a repeated assignment after a reconnect
    const traced = traceAgentBuild(assign, this.opts.agentId);
    if (!this.builder || this.state !== 'running') {
      traced.within(() => log.warn('assignment arrived while not running; giving it back'));
      traced.end('given back', `agent is ${this.state}`);
      this.stream.report({
        case: 'setupFailure',
        value: { buildId: assign.buildId, reason: SetupFailureReason.OTHER, missingInputs: [], message: `agent is ${this.state}` },
      });
      return;
    }
    const abort = new AbortController();
    const stopListener = () => abort.abort(new Error('agent stopping'));
    this.stop.signal.addEventListener('abort', stopListener, { once: true });
    // Inside the build's span, so that every line logged about it carries its trace id.
    const builder = this.builder;
    const done = traced.within(() =>
      this.runBuild(builder, assign, abort.signal, log, traced)
        .then((outcome) => traced.end(outcome))
        .catch((err: unknown) => {
          traced.end('crashed', (err as Error).message);
          log.error({ err }, 'build crashed in the agent');
          // The coordinator must hear of it (an output that could not be uploaded, say):
          // silence would leave the build started on this agent for as long as it stays
          // connected. An aborted build is not reported: the coordinator ended it, or the
          // agent is stopping and its builds go back to the queue after the lease.
          if (!abort.signal.aborted && !this.gaveBack(assign.buildId, err)) {
            this.stream.report({
              case: 'buildFinished',
              value: { buildId: assign.buildId, result: BuildResult.FAILURE, outputs: [], message: `the agent could not finish the build: ${(err as Error).message}` },
            });
          }
        })
        .finally(() => {
          this.stop.signal.removeEventListener('abort', stopListener);
          this.running.delete(assign.buildId);
          this.stream.sendLoad();
        }),
    );
    this.running.set(assign.buildId, { abort, done, trace: traced });
  }

  /**
   * Gives a build back as a setup failure (the coordinator retries it after a backoff)
   * when `err` says the coordinator cannot take its outputs now (out of space); false otherwise.
   */
  private gaveBack(buildId: string, err: unknown): boolean {
    const reason = retryLaterReason(err);
    if (reason === undefined) return false;
    this.stream.report({
      case: 'setupFailure',
      value: { buildId, reason: SetupFailureReason.OTHER, missingInputs: [], message: `the coordinator could not take the outputs now: ${reason}` },
    });
    return true;
  }

  /** Runs the build and reports it; says how it ended (for the trace). */
  private async runBuild(builder: Builder, assign: AssignBuild, signal: AbortSignal, log: Logger, traced: AgentBuildTrace): Promise<string> {
    this.stream.report({ case: 'buildStarted', value: { buildId: assign.buildId } });
    // The log goes to a file as it is written, never held whole in memory.
    const logDir = await mkdtemp(join(tmpdir(), 'kiln-log-'));
    const logFile = join(logDir, 'build.log');
    const logStream = createWriteStream(logFile);
    try {
      return await this.buildAndReport(builder, assign, signal, log, logStream, logFile, traced);
    } finally {
      logStream.destroy();
      await rm(logDir, { recursive: true, force: true });
    }
  }

  private async buildAndReport(
    builder: Builder,
    assign: AssignBuild,
    signal: AbortSignal,
    log: Logger,
    logStream: WriteStream,
    logFile: string,
    traced: AgentBuildTrace,
  ): Promise<string> {
    const outcome: BuildOutcome = await builder.build(
      {
        buildId: assign.buildId,
        derivationPath: assign.derivationPath,
        derivation: Buffer.from(assign.derivation).toString('utf8'),
        outputs: assign.outputs.map((o) => ({ name: o.name, path: o.path })),
        timeoutSeconds: stricterLimit(assign.timeoutSeconds, this.opts.limits?.timeoutSeconds ?? 0),
        maxSilentSeconds: stricterLimit(assign.maxSilentSeconds, this.opts.limits?.maxSilentSeconds ?? 0),
      },
      { signal, log: (chunk) => logStream.write(chunk), phase: (name) => traced.phase(name) },
    );
    if (signal.aborted) {
      log.info('build aborted');
      return 'aborted';
    }
    traced.builderDone();
    await new Promise<void>((resolve, reject) => logStream.end((err?: Error | null) => (err ? reject(err) : resolve())));
    await inSpan('kiln.agent.upload.log', { [ATTR.buildId]: assign.buildId }, () => uploadLog(this.client, assign.buildId, logFile, signal)).catch(
      (err: unknown) => log.warn({ err }, 'could not upload the build log'),
    );
    switch (outcome.kind) {
      case 'success': {
        const outputs = [];
        for (const output of outcome.outputs) {
          const attributes = { [ATTR.buildId]: assign.buildId, [ATTR.output]: output.name, 'kiln.output.path': output.storePath };
          outputs.push(
            await inSpan('kiln.agent.upload.output', attributes, async (span) => {
              // A small output goes with the report; a larger one by its own call.
              const info = (await inlineOutput(output, signal)) ?? (await uploadOutput(this.client, assign.buildId, output, signal, log));
              span.setAttribute('kiln.output.inline', info.narLz4 !== undefined);
              span.setAttribute(ATTR.narBytes, Number(info.narSize ?? 0));
              return info;
            }),
          );
        }
        log.info({ outputs: outputs.length, inline: outputs.filter((o) => o.narLz4 !== undefined).length }, 'build succeeded; outputs uploaded or carried inline');
        this.stream.report({ case: 'buildFinished', value: { buildId: assign.buildId, result: BuildResult.SUCCESS, outputs, message: '' } });
        return 'success';
      }
      case 'setup-failure':
        log.warn({ reason: outcome.reason, missing: outcome.missingInputs }, 'setup failed');
        this.stream.report({
          case: 'setupFailure',
          value: {
            buildId: assign.buildId,
            reason:
              outcome.reason === 'missing-inputs'
                ? SetupFailureReason.MISSING_INPUTS
                : outcome.reason === 'could-not-delete-outputs'
                  ? SetupFailureReason.COULD_NOT_DELETE_OUTPUTS
                  : SetupFailureReason.OTHER,
            missingInputs: outcome.missingInputs,
            message: outcome.message,
          },
        });
        return 'setup-failure';
      default: {
        const result = { failure: BuildResult.FAILURE, timeout: BuildResult.TIMEOUT, 'silent-timeout': BuildResult.SILENT_TIMEOUT }[outcome.kind];
        log.info({ outcome: outcome.kind }, 'build failed');
        this.stream.report({ case: 'buildFinished', value: { buildId: assign.buildId, result, outputs: [], message: outcome.message } });
        return outcome.kind;
      }
    }
  }
}
