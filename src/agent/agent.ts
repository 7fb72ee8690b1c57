// The agent: holds the control stream, runs assigned builds through its builder up to
// its slots, uploads outputs and logs, and reports. Lifecycle: running → draining (no
// new builds, finish the ones in hand) → stopped.
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import { BuildResult, SetupFailureReason, type AssignBuild } from '../../gen/kiln/v1/agent_pb.js';
import type { Logger } from '../logger.js';
import type { AgentFeatures } from '../scheduler/placement.js';
import type { Tag } from '../scheduler/tags.js';
import { DEFAULT_RETRY_FOR_MS, RetryBudgetSpent } from './backoff.js';
import type { Builder, BuildOutcome, BuiltOutput, CacheInfo, Substituter } from './builders/builder.js';
import { ControlStream } from './control-stream.js';
import { Coordinators } from './coordinators.js';
import { inlineOutput, uploadLog, uploadOutput, type UploadContext } from './uploader.js';
import { inSpan, traceAgentBuild, type AgentBuildTrace } from '../telemetry/agent-telemetry.js';
import { retryLaterReason } from './retry-later.js';
import { OverSizeLimit, tooLargeResult } from './too-large.js';
import { logTooLargeMessage, outputTooLargeMessage, overLimit, type SizeLimits } from '../protocol/size-limits.js';
import { ATTR } from '../telemetry/build-trace.js';

export const AGENT_VERSION = '0.1.0';
/** How long a draining agent waits for the coordinator to take its last reports. */
const DRAIN_REPORT_WAIT_MS = 30_000;

export { agentClient } from './coordinators.js';

export interface AgentOptions {
  /** Every coordinator (replica) this agent may talk to; it moves to the next when one is out of reach. */
  coordinatorUrls: string[];
  agentId: string;
  password: string;
  systems: string[];
  maxParallel: number;
  tags: Tag[];
  /** System features it offers: supported (mandatory included) and mandatory. */
  features?: AgentFeatures;
  /** Makes the builder once the coordinator has said where its cache is. */
  builder: (cache: CacheInfo) => Builder;
  /** This agent's own substituters, asked after those the coordinator names. */
  substituters?: Substituter[];
  /**
   * Time limits of this agent's own (as Nix's timeout and max-silent-time settings), in
   * seconds, zero for none: a build gets the stricter of these and the coordinator's.
   */
  limits?: { timeoutSeconds: number; maxSilentSeconds: number };
  /**
   * How long calls to the coordinator and fetches from its cache retry transient
   * failures before the build is given up as `infrastructure` (default 30 minutes).
   */
  retryForMs?: number;
  log: Logger;
}

export type AgentState = 'starting' | 'running' | 'draining' | 'stopped';

interface RunningBuild {
  abort: AbortController;
  done: Promise<void>;
  trace: AgentBuildTrace;
}

/** The stricter of two time limits where zero means none. */
export function stricterLimit(a: number, b: number): number {
  return a && b ? Math.min(a, b) : a || b;
}

export class Agent {
  private state: AgentState = 'starting';
  private readonly running = new Map<string, RunningBuild>();
  private readonly stop = new AbortController();
  private readonly coordinators: Coordinators;
  private readonly stream: ControlStream;
  private builder: Builder | undefined;
  /** The coordinator's size limits as its last Welcome said (none known before one). */
  private sizeLimits: SizeLimits = { maxOutputBytes: 0, maxLogBytes: 0 };
  private runLoop: Promise<void> | undefined;
  private markStopped!: () => void;
  private readonly stoppedPromise = new Promise<void>((resolve) => (this.markStopped = resolve));

  constructor(private readonly opts: AgentOptions) {
    const coordinators = (this.coordinators = new Coordinators(opts.coordinatorUrls, opts, opts.log));
    this.stream = new ControlStream({
      // Each session goes to the coordinator current then; its Welcome says where that one's cache is.
      client: () => {
        const at = coordinators.current();
        return { client: at.client, failed: (err) => coordinators.failed(at, err), welcomed: (welcome) => (at.cacheUrl = welcome.cacheUrl) };
      },
      systems: opts.systems,
      maxParallel: opts.maxParallel,
      tags: opts.tags,
      features: opts.features,
      version: AGENT_VERSION,
      log: opts.log,
      handlers: {
        heldBuilds: () => [...this.running.keys()],
        freeSlots: () => (this.state === 'running' ? Math.max(0, opts.maxParallel - this.running.size) : 0),
        onWelcome: (welcome) => {
          this.sizeLimits = { maxOutputBytes: Number(welcome.maxOutputBytes), maxLogBytes: Number(welcome.maxLogBytes) };
          this.builder ??= opts.builder(
            this.cacheInfo(welcome.cacheUrl, welcome.cachePublicKey, [...welcome.substituters.map(({ url, publicKeys }) => ({ url, publicKeys })), ...(opts.substituters ?? [])]),
          );
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
          const refused = new ConnectError(refusal.message, refusal.code);
          if (this.gaveBack(buildId, refused)) return;
          // An output sent inline over the coordinator's max-output-size.
          const tooLarge = tooLargeResult(refused);
          if (tooLarge) {
            this.stream.report({ case: 'buildFinished', value: { buildId, result: tooLarge.result, outputs: [], message: tooLarge.message } });
            return;
          }
          this.stream.report({
            case: 'buildFinished',
            value: { buildId, result: BuildResult.FAILURE, outputs: [], message: `the coordinator refused the build's success: ${refusal.message}` },
          });
        },
      },
    });
  }

  /** The cache as builders see it: always the current coordinator's first, the others' after. */
  private cacheInfo(firstUrl: string, publicKey: string, substituters: Substituter[]): CacheInfo {
    const coordinators = this.coordinators;
    return {
      get url() {
        return coordinators.cacheUrls()[0] ?? firstUrl;
      },
      publicKey,
      substituters,
      mirrors: () => coordinators.cacheUrls().slice(1),
      retry: { forMs: this.retryForMs(), log: this.opts.log },
    };
  }

  private retryForMs(): number {
    return this.opts.retryForMs ?? DEFAULT_RETRY_FOR_MS;
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
    this.runLoop ??= this.coordinators.resolve().then(() => this.stream.run(this.stop.signal));
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
          // A coordinator (or its cache) out of reach for the whole retry budget is not the
          // build's fault: `infrastructure`, which the default retry policy tries again.
          if (!abort.signal.aborted && !this.gaveBack(assign.buildId, err)) {
            const result = err instanceof RetryBudgetSpent ? BuildResult.INFRASTRUCTURE : BuildResult.FAILURE;
            this.stream.report({
              case: 'buildFinished',
              value: { buildId: assign.buildId, result, outputs: [], message: `the agent could not finish the build: ${(err as Error).message}` },
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

  /** Sends each output: a small one goes with the report, a larger one by its own call. */
  private async sendOutputs(buildId: string, built: BuiltOutput[], uploads: UploadContext) {
    const outputs = [];
    for (const output of built) {
      const attributes = { [ATTR.buildId]: buildId, [ATTR.output]: output.name, 'kiln.output.path': output.storePath };
      outputs.push(
        await inSpan('kiln.agent.upload.output', attributes, async (span) => {
          const inline = await inlineOutput(output, uploads.signal);
          const max = uploads.maxOutputBytes ?? 0;
          if (inline && overLimit(inline.narSize ?? 0n, max)) throw new OverSizeLimit('output', outputTooLargeMessage(output.storePath, inline.narSize ?? 0n, max));
          const info = inline ?? (await uploadOutput(uploads, buildId, output));
          span.setAttribute('kiln.output.inline', info.narLz4 !== undefined);
          span.setAttribute(ATTR.narBytes, Number(info.narSize ?? 0));
          return info;
        }),
      );
    }
    return outputs;
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
    // Hydra's max_log_size: a build whose log passes the coordinator's limit is stopped
    // there; the log is kept up to the limit (which the coordinator takes) and the build fails.
    const limits = this.sizeLimits;
    const logLimit = new AbortController();
    let logged = 0;
    const writeLog = (chunk: Buffer) => {
      if (logLimit.signal.aborted) return;
      if (overLimit(logged + chunk.length, limits.maxLogBytes)) {
        logStream.write(chunk.subarray(0, limits.maxLogBytes - logged));
        logged = limits.maxLogBytes;
        logLimit.abort(new OverSizeLimit('log', logTooLargeMessage(assign.buildId, limits.maxLogBytes)));
        return;
      }
      logged += chunk.length;
      logStream.write(chunk);
    };
    const outcome: BuildOutcome = await builder.build(
      {
        buildId: assign.buildId,
        derivationPath: assign.derivationPath,
        derivation: Buffer.from(assign.derivation).toString('utf8'),
        outputs: assign.outputs.map((o) => ({ name: o.name, path: o.path })),
        timeoutSeconds: stricterLimit(assign.timeoutSeconds, this.opts.limits?.timeoutSeconds ?? 0),
        maxSilentSeconds: stricterLimit(assign.maxSilentSeconds, this.opts.limits?.maxSilentSeconds ?? 0),
      },
      { signal: AbortSignal.any([signal, logLimit.signal]), log: writeLog, phase: (name) => traced.phase(name) },
    );
    if (signal.aborted) {
      log.info('build aborted');
      return 'aborted';
    }
    traced.builderDone();
    await new Promise<void>((resolve, reject) => logStream.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const uploads: UploadContext = { client: this.coordinators.client, signal, log, retryForMs: this.retryForMs(), maxOutputBytes: limits.maxOutputBytes };
    const logRefused = await inSpan('kiln.agent.upload.log', { [ATTR.buildId]: assign.buildId }, () => uploadLog(uploads, assign.buildId, logFile)).then(
      () => undefined,
      (err: unknown) => {
        if (signal.aborted) throw err;
        // A coordinator that did not say its limit refuses a log over it: the build fails as if the agent had stopped it.
        const tooLarge = tooLargeResult(err);
        if (tooLarge) return tooLarge;
        log.warn({ err }, 'could not upload the build log');
        return undefined;
      },
    );
    const logOver = logRefused ?? tooLargeResult(logLimit.signal.reason);
    if (logOver) {
      log.warn({ maxLogBytes: limits.maxLogBytes }, 'build failed: its log passed the coordinator\'s max-log-size');
      const message = logRefused ? logOver.message : `${logOver.message}: the build was stopped there; its log is kept up to the limit`;
      this.stream.report({ case: 'buildFinished', value: { buildId: assign.buildId, result: logOver.result, outputs: [], message } });
      return 'log-too-large';
    }
    switch (outcome.kind) {
      case 'success': {
        let outputs: Awaited<ReturnType<typeof this.sendOutputs>>;
        try {
          outputs = await this.sendOutputs(assign.buildId, outcome.outputs, uploads);
        } catch (err) {
          // An output over the coordinator's max-output-size (refused, or known to be) fails the build.
          const tooLarge = signal.aborted ? undefined : tooLargeResult(err);
          if (!tooLarge) throw err;
          log.warn({ maxOutputBytes: limits.maxOutputBytes, reason: tooLarge.message }, "build failed: an output is over the coordinator's max-output-size");
          this.stream.report({ case: 'buildFinished', value: { buildId: assign.buildId, result: tooLarge.result, outputs: [], message: tooLarge.message } });
          return 'output-too-large';
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
        const result = {
          failure: BuildResult.FAILURE,
          timeout: BuildResult.TIMEOUT,
          'silent-timeout': BuildResult.SILENT_TIMEOUT,
          infrastructure: BuildResult.INFRASTRUCTURE,
        }[outcome.kind];
        log.info({ outcome: outcome.kind }, 'build failed');
        this.stream.report({ case: 'buildFinished', value: { buildId: assign.buildId, result, outputs: [], message: outcome.message } });
        return outcome.kind;
      }
    }
  }
}
