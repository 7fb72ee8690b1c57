// The agent: holds the control stream, runs assigned builds through its builder up to
// its slots, uploads outputs and logs, and reports. Lifecycle: running → draining (no
// new builds, finish the ones in hand) → stopped.
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { AgentService, BuildResult, SetupFailureReason, type AssignBuild } from '../../gen/kiln/v1/agent_pb.js';
import { AGENT_ID_HEADER, AGENT_PASSWORD_HEADER } from '../coordinator/auth.js';
import type { Logger } from '../logger.js';
import type { Tag } from '../scheduler/tags.js';
import type { Builder, BuildOutcome, CacheInfo } from './builders/builder.js';
import { ControlStream } from './control-stream.js';
import { uploadLog, uploadOutput } from './uploader.js';

export const AGENT_VERSION = '0.1.0';

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
}

export function agentClient(url: string, agentId: string, password: string): Client<typeof AgentService> {
  const credentials: Interceptor = (next) => (req) => {
    req.header.set(AGENT_ID_HEADER, agentId);
    req.header.set(AGENT_PASSWORD_HEADER, password);
    return next(req);
  };
  // HTTP/2 pings so a coordinator that vanished behind NAT is noticed in seconds.
  const transport = createGrpcTransport({ baseUrl: url, interceptors: [credentials], pingIntervalMs: 10_000, pingTimeoutMs: 10_000 });
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
          opts.log.info({ buildId, reason }, 'build canceled by the coordinator');
          this.running.get(buildId)?.abort.abort(new Error(`canceled: ${reason}`));
        },
        onDrain: () => {
          void this.drain();
        },
        onRefused: (buildId, refusal, report) => {
          // A success the coordinator would not take (outputs missing or not as uploaded)
          // must not leave the build started for ever: it ends as a failure that says why.
          if (report?.case !== 'buildFinished' || report.value.result !== BuildResult.SUCCESS) return;
          if (refusal.code === Code.PermissionDenied) return; // not this agent's build any more
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
    if (this.state === 'stopped') return;
    this.state = 'draining';
    this.stream.sendLoad();
    await Promise.all([...this.running.values()].map((b) => b.done));
    await this.shutdown();
  }

  /** Stops now: running builds are aborted (the coordinator requeues them after the lease). */
  async shutdown(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    for (const b of this.running.values()) b.abort.abort(new Error('agent stopping'));
    await Promise.all([...this.running.values()].map((b) => b.done));
    this.stop.abort();
    await this.runLoop;
  }

  private startBuild(assign: AssignBuild): void {
    const log = this.opts.log.child({ buildId: assign.buildId });
    if (this.running.has(assign.buildId)) return; // a repeated assignment after a reconnect
    if (!this.builder || this.state !== 'running') {
      log.warn('assignment arrived while not running; giving it back');
      this.stream.report({
        case: 'setupFailure',
        value: { buildId: assign.buildId, reason: SetupFailureReason.OTHER, missingInputs: [], message: `agent is ${this.state}` },
      });
      return;
    }
    const abort = new AbortController();
    const stopListener = () => abort.abort(new Error('agent stopping'));
    this.stop.signal.addEventListener('abort', stopListener, { once: true });
    const done = this.runBuild(this.builder, assign, abort.signal, log)
      .catch((err: unknown) => log.error({ err }, 'build crashed in the agent'))
      .finally(() => {
        this.stop.signal.removeEventListener('abort', stopListener);
        this.running.delete(assign.buildId);
        this.stream.sendLoad();
      });
    this.running.set(assign.buildId, { abort, done });
  }

  private async runBuild(builder: Builder, assign: AssignBuild, signal: AbortSignal, log: Logger): Promise<void> {
    this.stream.report({ case: 'buildStarted', value: { buildId: assign.buildId } });
    // The log goes to a file as it is written, never held whole in memory.
    const logDir = await mkdtemp(join(tmpdir(), 'kiln-log-'));
    const logFile = join(logDir, 'build.log');
    const logStream = createWriteStream(logFile);
    try {
      await this.buildAndReport(builder, assign, signal, log, logStream, logFile);
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
  ): Promise<void> {
    const outcome: BuildOutcome = await builder.build(
      {
        buildId: assign.buildId,
        derivationPath: assign.derivationPath,
        derivation: Buffer.from(assign.derivation).toString('utf8'),
        outputs: assign.outputs.map((o) => ({ name: o.name, path: o.path })),
        timeoutSeconds: stricterLimit(assign.timeoutSeconds, this.opts.limits?.timeoutSeconds ?? 0),
        maxSilentSeconds: stricterLimit(assign.maxSilentSeconds, this.opts.limits?.maxSilentSeconds ?? 0),
      },
      { signal, log: (chunk) => logStream.write(chunk) },
    );
    if (signal.aborted) {
      log.info('build aborted');
      return;
    }
    await new Promise<void>((resolve, reject) => logStream.end((err?: Error | null) => (err ? reject(err) : resolve())));
    await uploadLog(this.client, assign.buildId, logFile, signal).catch((err: unknown) =>
      log.warn({ err }, 'could not upload the build log'),
    );
    switch (outcome.kind) {
      case 'success': {
        const outputs = [];
        for (const output of outcome.outputs) {
          outputs.push(await uploadOutput(this.client, assign.buildId, output, signal, log));
        }
        log.info({ outputs: outputs.length }, 'build succeeded; outputs uploaded');
        this.stream.report({ case: 'buildFinished', value: { buildId: assign.buildId, result: BuildResult.SUCCESS, outputs, message: '' } });
        return;
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
        return;
      default: {
        const result = { failure: BuildResult.FAILURE, timeout: BuildResult.TIMEOUT, 'silent-timeout': BuildResult.SILENT_TIMEOUT }[outcome.kind];
        log.info({ outcome: outcome.kind }, 'build failed');
        this.stream.report({ case: 'buildFinished', value: { buildId: assign.buildId, result, outputs: [], message: outcome.message } });
      }
    }
  }
}
