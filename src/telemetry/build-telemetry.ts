// The coordinator's account of builds for tracing and metrics: the services and the
// dispatcher call it at the moments that matter (a submission, a claim, a report, an
// upload) and it makes the attempt's spans and counts. With tracing off it only counts.
import { context, propagation, ROOT_CONTEXT, trace, SpanStatusCode, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { and, eq, inArray } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { buildAttempts, builds } from '../db/schema.js';
import type { Logger } from '../logger.js';
import type { BuildEvents } from '../coordinator/build-events.js';
import { ATTR, buildContext, formatTraceparent, startBuildRootSpan, tracer } from './build-trace.js';
import type { CoordinatorMetrics, UploadKind } from './metrics.js';
import { tracingEnabled } from './tracing.js';

/** A claimed build as the telemetry needs it. */
export interface AssignedBuild {
  id: string;
  derivationPath: string;
  attempt: number;
}

export interface Assignment {
  /** The W3C traceparent the AssignBuild carries ('' with tracing off). */
  traceparent: string;
  /** Runs `fn` with the assignment's span active (so log lines carry its trace id). */
  within<T>(fn: () => T): T;
  end(error?: string): void;
}

/** An assignment with tracing off: nothing to continue, nothing to end. */
export const NO_ASSIGNMENT: Assignment = { traceparent: '', within: (fn) => fn(), end: () => {} };

const MAX_REMEMBERED = 100_000;

export class BuildTelemetry {
  /** Attempts this coordinator assigned and has not seen end, by build id. */
  private readonly attempts = new Map<string, number>();
  private readonly stopListening: () => void;

  constructor(private readonly opts: { db: Database; metrics: CoordinatorMetrics; events: BuildEvents; log: Logger }) {
    this.stopListening = opts.events.on((change) => {
      if (change.kind === 'submitted') opts.metrics.submitted.inc();
      else if (change.kind === 'started') opts.metrics.started.inc();
      else if (change.kind === 'finished' || change.kind === 'requeued' || change.kind === 'canceled') {
        // However the attempt ended (report, lost agent, cancel), its root span ends now.
        const attempt = this.attempts.get(change.buildId);
        if (attempt !== undefined) this.attemptEnded(change.buildId, attempt);
      }
    });
  }

  stop(): void {
    this.stopListening();
  }

  /** Builds a SubmitBuild call created: each first attempt's trace starts with the call. */
  submitted(buildIds: string[], startedAt: number): void {
    if (!tracingEnabled()) return;
    for (const id of buildIds) {
      tracer()
        .startSpan('kiln.build.submit', { startTime: startedAt, attributes: { [ATTR.buildId]: id } }, buildContext(id, 1))
        .end();
    }
  }

  /** A claim that found work: how long it took, counted once per claim. */
  claimed(count: number, startedAt: number): void {
    this.opts.metrics.allocationLatency.observe((performance.now() - startedAt) / 1000);
    this.opts.metrics.assigned.inc(count);
  }

  /** One build of a claim is being sent to its agent: the assignment span, whose context the agent continues. */
  assigning(build: AssignedBuild, agentId: string, claimStartedAt: number): Assignment {
    if (!tracingEnabled()) return NO_ASSIGNMENT;
    this.remember(build.id, build.attempt);
    const span = tracer().startSpan(
      'kiln.build.assign',
      { startTime: claimStartedAt, attributes: { ...buildAttributes(build), [ATTR.agentId]: agentId } },
      buildContext(build.id, build.attempt),
    );
    const active = trace.setSpan(ROOT_CONTEXT, span);
    return {
      traceparent: formatTraceparent(span.spanContext()),
      within: (fn) => context.with(active, fn),
      end: (error) => endSpan(span, error),
    };
  }

  /** A report on a build from its agent, recorded inside a span of the attempt's trace. */
  async report<T>(kind: string, buildId: string, agentId: string, record: () => Promise<T>): Promise<T> {
    if (!tracingEnabled()) return record();
    const assignedHere = this.attempts.has(buildId);
    const attempt = await this.attemptOf(buildId);
    if (attempt === undefined) return record();
    const attributes = { [ATTR.buildId]: buildId, [ATTR.attempt]: attempt, [ATTR.agentId]: agentId };
    const span = tracer().startSpan(`kiln.build.report.${kind}`, { attributes }, buildContext(buildId, attempt));
    let result: T;
    try {
      result = await context.with(trace.setSpan(ROOT_CONTEXT, span), record);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
    // An attempt this coordinator did not assign (its agent came here after a
    // reconnect) ends here; one it assigned ends through the build events.
    if ((kind === 'finished' || kind === 'setup-failure') && !assignedHere) this.attemptEnded(buildId, attempt);
    return result;
  }

  /** A final report's outcome, for the counters. */
  outcome(outcome: string): void {
    this.opts.metrics.attemptEnded(outcome);
  }

  /** An agent called inputs missing that the cache holds. */
  agentFault(agentId: string): void {
    this.opts.metrics.agentFaults.inc({ agent_id: agentId });
  }

  /**
   * An upload call: its span continues the sender's trace (the traceparent in the call's
   * headers) and it is counted once complete.
   */
  upload<T>(kind: UploadKind, headers: Headers, attributes: Attributes, receive: (span: Span | undefined) => Promise<Received<T>>): Promise<T> {
    return traceUpload(this.opts.metrics, kind, () => propagation.extract(ROOT_CONTEXT, headers, headerGetter), attributes, receive);
  }

  /**
   * An output that came inside its report (OutputInfo.nar_lz4): traced and counted as an
   * upload, its span a child of the report's (the active span).
   */
  uploadInline<T>(attributes: Attributes, receive: () => Promise<Received<T>>): Promise<T> {
    return traceUpload(this.opts.metrics, 'output', () => context.active(), attributes, receive);
  }

  /**
   * Remembers an attempt until it ends. One whose end this replica never hears of (its
   * agent reported to another replica) would stay, so the oldest are let go past a bound.
   */
  private remember(buildId: string, attempt: number): void {
    this.attempts.delete(buildId);
    this.attempts.set(buildId, attempt);
    if (this.attempts.size <= MAX_REMEMBERED) return;
    for (const oldest of this.attempts.keys()) {
      this.attempts.delete(oldest);
      if (this.attempts.size <= MAX_REMEMBERED) break;
    }
  }

  private async attemptOf(buildId: string): Promise<number | undefined> {
    const known = this.attempts.get(buildId);
    if (known !== undefined) return known;
    const [row] = await this.opts.db.select({ attempt: builds.attempt }).from(builds).where(eq(builds.id, buildId));
    return row && row.attempt > 0 ? row.attempt : undefined;
  }

  /** The attempt is over: its root span (and the time it queued) from what the database recorded. */
  private attemptEnded(buildId: string, attempt: number): void {
    this.attempts.delete(buildId);
    if (!tracingEnabled()) return;
    void this.emitRootSpan(buildId, attempt).catch((err: unknown) => this.opts.log.warn({ err, buildId, attempt }, 'could not trace the end of an attempt'));
  }

  private async emitRootSpan(buildId: string, attempt: number): Promise<void> {
    const { db } = this.opts;
    const [build] = await db
      .select({ derivationPath: builds.derivationPath, system: builds.system, createdAt: builds.createdAt })
      .from(builds)
      .where(eq(builds.id, buildId));
    const rows = await db
      .select()
      .from(buildAttempts)
      .where(and(eq(buildAttempts.buildId, buildId), inArray(buildAttempts.attempt, [attempt - 1, attempt])));
    const current = rows.find((r) => r.attempt === attempt);
    if (!build || !current) return;
    const previous = rows.find((r) => r.attempt === attempt - 1);
    // The attempt began when the build entered the queue for it: at submission, or when the attempt before ended.
    const queuedAt = attempt === 1 ? build.createdAt : (previous?.endedAt ?? current.allocatedAt);
    const attributes: Attributes = {
      [ATTR.buildId]: buildId,
      [ATTR.derivation]: build.derivationPath,
      [ATTR.system]: build.system,
      [ATTR.attempt]: attempt,
      [ATTR.agentId]: current.agentId,
      [ATTR.outcome]: current.outcome ?? 'unfinished',
    };
    const root = startBuildRootSpan(buildId, attempt, 'kiln.build', attributes, queuedAt);
    tracer()
      .startSpan('kiln.build.queued', { startTime: queuedAt, attributes: { [ATTR.buildId]: buildId, [ATTR.attempt]: attempt } }, trace.setSpan(ROOT_CONTEXT, root))
      .end(current.allocatedAt);
    if (current.outcome && current.outcome !== 'success') root.setStatus({ code: SpanStatusCode.ERROR, message: `${current.outcome}: ${current.message}`.slice(0, 500) });
    root.end(current.endedAt ?? new Date());
  }
}

/** What an upload stored, and how many bytes that was. */
export interface Received<T> {
  result: T;
  bytes: number;
}

/** The part of the telemetry the upload calls (and outputs sent inline) use. */
export type UploadTelemetry = Pick<BuildTelemetry, 'upload' | 'uploadInline'>;

/** Uploads neither traced nor counted (a coordinator assembled without telemetry, in tests). */
export const UNTRACED: UploadTelemetry = {
  upload: async (_kind, _headers, _attributes, receive) => (await receive(undefined)).result,
  uploadInline: async (_attributes, receive) => (await receive()).result,
};

/** Counts an upload and, with tracing on, receives it in a span under the context `parentOf` gives. */
async function traceUpload<T>(
  metrics: CoordinatorMetrics,
  kind: UploadKind,
  parentOf: () => Context,
  attributes: Attributes,
  receive: (span: Span | undefined) => Promise<Received<T>>,
): Promise<T> {
  const started = performance.now();
  const count = ({ result, bytes }: Received<T>) => {
    metrics.uploaded(kind, bytes, (performance.now() - started) / 1000);
    return result;
  };
  if (!tracingEnabled()) return count(await receive(undefined));
  const parent = parentOf();
  const span = tracer().startSpan(`kiln.upload.${kind}`, { attributes }, parent);
  try {
    const received = await context.with(trace.setSpan(parent, span), () => receive(span));
    span.setAttribute(ATTR.bytes, received.bytes);
    return count(received);
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    throw err;
  } finally {
    span.end();
  }
}

export function buildAttributes(build: AssignedBuild): Attributes {
  return { [ATTR.buildId]: build.id, [ATTR.derivation]: build.derivationPath, [ATTR.attempt]: build.attempt };
}

function endSpan(span: Span, error?: string): void {
  if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  span.end();
}

const headerGetter = {
  keys: (carrier: Headers) => [...carrier.keys()],
  get: (carrier: Headers, key: string) => carrier.get(key) ?? undefined,
};
