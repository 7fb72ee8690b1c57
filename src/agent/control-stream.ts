// The agent's end of the control stream: keeps one stream open to the coordinator,
// reconnecting with backoff and jitter, and tells the coordinator on each connect which
// builds it holds. Reports that may not have arrived are sent again after a reconnect
// (the coordinator treats repeats as harmless); a report the coordinator refused is not.
import { statfsSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type Client } from '@connectrpc/connect';
import {
  AgentService,
  ConnectRequestSchema,
  ReportKind,
  type AssignBuild,
  type ConnectRequest,
  type Refusal,
  type Welcome,
} from '../../gen/kiln/v1/agent_pb.js';
import { AsyncQueue } from '../async-queue.js';
import type { Logger } from '../logger.js';
import type { AgentFeatures } from '../scheduler/placement.js';
import type { Tag } from '../scheduler/tags.js';
import { Backoff, delay } from '../backoff.js';

type RequestMessage = NonNullable<MessageInitShape<typeof ConnectRequestSchema>['message']>;
/** What the agent reports about builds (init shapes, so callers pass plain objects). */
export type Report = Extract<RequestMessage, { case: 'buildStarted' | 'setupFailure' | 'buildFinished' }>;

/** The final reports, the ones kept until acknowledged, by the kind a refusal names. */
const FINAL_REPORTS: Partial<Record<ReportKind, Report['case']>> = {
  [ReportKind.SETUP_FAILURE]: 'setupFailure',
  [ReportKind.BUILD_FINISHED]: 'buildFinished',
};

export interface ControlStreamHandlers {
  /** Builds the agent holds now (running, or finished with a report not yet confirmed). */
  heldBuilds(): string[];
  freeSlots(): number;
  onWelcome(welcome: Welcome): void;
  onAssign(assign: AssignBuild): void;
  onCancel(buildId: string, reason: string): void;
  onDrain(): void;
  /**
   * The coordinator refused a report on a build (it is logged and not sent again);
   * `report` is the final report it refused, when it was one.
   */
  onRefused(buildId: string, refusal: Refusal, report: Report | undefined): void;
}

/** Where one session of the stream goes, and who hears how it went. */
export interface StreamTarget {
  client: Client<typeof AgentService>;
  /** The session failed or ended (the next one may go elsewhere). */
  failed?(err: unknown): void;
  welcomed?(welcome: Welcome): void;
}

export interface ControlStreamOptions {
  /** The coordinator's client, or a choice made afresh for each session (several coordinators). */
  client: Client<typeof AgentService> | (() => StreamTarget);
  systems: string[];
  maxParallel: number;
  tags: Tag[];
  /** System features it offers (Nix's meaning); none when unset. */
  features?: AgentFeatures;
  version: string;
  log: Logger;
  handlers: ControlStreamHandlers;
  /** Where the builds' store lives, whose free space load reports carry (default: the temp dir). */
  diskPath?: string;
}

export class ControlStream {
  private outbox: AsyncQueue<ConnectRequest> | undefined;
  /** Final reports per build, kept until the coordinator acknowledges them. */
  private readonly pendingFinal = new Map<string, Report>();
  private heartbeat: NodeJS.Timeout | undefined;
  private sequence = 0n;
  connected = false;

  constructor(private readonly opts: ControlStreamOptions) {}

  /** Sends a report now if connected; final reports are also kept to resend after a reconnect. */
  report(report: Report): void {
    if (report.case === 'buildFinished' || report.case === 'setupFailure') this.pendingFinal.set(report.value.buildId ?? '', report);
    this.outbox?.push(create(ConnectRequestSchema, { message: report }));
  }

  /** Builds whose final report is still pending. */
  unconfirmed(): string[] {
    return [...this.pendingFinal.keys()];
  }

  private settledWaiters: (() => void)[] = [];

  /** Resolves once the coordinator has acknowledged (or refused) every final report. */
  whenSettled(): Promise<void> {
    if (this.pendingFinal.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.settledWaiters.push(resolve));
  }

  private forget(buildId: string): void {
    this.pendingFinal.delete(buildId);
    if (this.pendingFinal.size > 0) return;
    const waiters = this.settledWaiters;
    this.settledWaiters = [];
    for (const w of waiters) w();
  }

  sendLoad(): void {
    this.outbox?.push(
      create(ConnectRequestSchema, {
        message: {
          case: 'loadReport',
          value: { freeSlots: this.opts.handlers.freeSlots(), loadAverage: loadavg()[0] ?? 0, freeDiskBytes: freeDiskBytes(this.opts.diskPath ?? tmpdir()) },
        },
      }),
    );
  }

  /** Runs until the signal aborts: connect, serve the stream, reconnect after a pause. */
  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff({ initialMs: 250, maxMs: 30_000 });
    while (!signal.aborted) {
      try {
        await this.session(signal, () => backoff.reset());
        if (signal.aborted) return;
        this.opts.log.warn('control stream ended; reconnecting');
      } catch (err) {
        if (signal.aborted) return;
        const e = ConnectError.from(err);
        if (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied) {
          this.opts.log.error({ err: e.message }, 'the coordinator refused this agent; check its id and password');
        } else {
          this.opts.log.warn({ err: e.message, code: Code[e.code] }, 'control stream failed; reconnecting');
        }
      }
      await delay(backoff.next(), signal).catch(() => undefined);
    }
  }

  private async session(signal: AbortSignal, onWelcome: () => void): Promise<void> {
    const choose = this.opts.client;
    const target: StreamTarget = typeof choose === 'function' ? choose() : { client: choose };
    try {
      await this.serve(target, signal, onWelcome);
    } catch (err) {
      target.failed?.(err);
      throw err;
    }
    // A coordinator that ends the stream is going away: the next session tries another.
    if (!signal.aborted) target.failed?.(new ConnectError('the coordinator ended the control stream', Code.Unavailable));
  }

  private async serve(target: StreamTarget, signal: AbortSignal, onWelcome: () => void): Promise<void> {
    const outbox = new AsyncQueue<ConnectRequest>();
    const held = [...new Set([...this.opts.handlers.heldBuilds(), ...this.pendingFinal.keys()])];
    outbox.push(
      create(ConnectRequestSchema, {
        message: {
          case: 'hello',
          value: {
            systems: this.opts.systems,
            maxParallelBuilds: this.opts.maxParallel,
            tags: this.opts.tags,
            version: this.opts.version,
            heldBuildIds: held,
            cpuCount: availableParallelism(),
            systemFeatures: this.opts.features?.supported ?? [],
            mandatoryFeatures: this.opts.features?.mandatory ?? [],
          },
        },
      }),
    );
    const abort = new AbortController();
    const onAbort = () => abort.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const responses = target.client.connect(outbox, { signal: abort.signal });
      for await (const response of responses) {
        const m = response.message;
        switch (m.case) {
          case 'welcome': {
            // The coordinator no longer expects reports on abandoned builds.
            for (const id of m.value.abandonBuildIds) this.forget(id);
            this.outbox = outbox;
            this.connected = true;
            onWelcome();
            target.welcomed?.(m.value);
            for (const report of this.pendingFinal.values()) outbox.push(create(ConnectRequestSchema, { message: report }));
            this.startHeartbeat(outbox, m.value.heartbeatIntervalMs || 10_000);
            this.opts.handlers.onWelcome(m.value);
            this.sendLoad();
            break;
          }
          case 'assignBuild':
            this.opts.handlers.onAssign(m.value);
            break;
          case 'cancelBuild':
            this.opts.handlers.onCancel(m.value.buildId, m.value.reason);
            break;
          case 'drain':
            this.opts.handlers.onDrain();
            break;
          case 'acknowledged':
            if (m.value.warning) this.opts.log.warn({ buildId: m.value.buildId, warning: m.value.warning }, 'the coordinator took a report as this agent\'s fault');
            if (m.value.refusal) this.refused(m.value.buildId, m.value.refusal);
            else this.forget(m.value.buildId);
            break;
          case 'ping':
          case undefined:
            break;
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.connected = false;
      if (this.outbox === outbox) this.outbox = undefined;
      outbox.end();
      clearInterval(this.heartbeat);
    }
  }

  private refused(buildId: string, refusal: Refusal): void {
    const pending = this.pendingFinal.get(buildId);
    const report = pending && pending.case === FINAL_REPORTS[refusal.report] ? pending : undefined;
    if (report) this.forget(buildId);
    this.opts.log.error(
      { buildId, report: ReportKind[refusal.report], code: Code[refusal.code], err: refusal.message },
      'the coordinator refused a report; it is not sent again',
    );
    this.opts.handlers.onRefused(buildId, refusal, report);
  }

  private startHeartbeat(outbox: AsyncQueue<ConnectRequest>, intervalMs: number): void {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      this.sequence += 1n;
      outbox.push(create(ConnectRequestSchema, { message: { case: 'heartbeat', value: { sequence: this.sequence } } }));
    }, intervalMs);
    this.heartbeat.unref();
  }
}

/** Free bytes on the filesystem that holds `path` (0 when it cannot be read: unknown). */
function freeDiskBytes(path: string): bigint {
  try {
    const st = statfsSync(path, { bigint: true });
    return st.bavail * st.bsize;
  } catch {
    return 0n;
  }
}
