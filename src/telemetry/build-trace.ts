// One trace per build attempt. Its trace id and the id of its root span follow from the
// build id and the attempt number, so every process that touches the attempt (the
// coordinator replica that took the submission, the one that assigned it, the agent,
// the one that received the report) joins the same trace without storing anything, and
// an operator finds the trace from the build id alone (the dashboard shows it).
import { createHash, randomBytes } from 'node:crypto';
import {
  ROOT_CONTEXT,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  type TimeInput,
} from '@opentelemetry/api';

/** Attribute names on kiln's spans. */
export const ATTR = {
  buildId: 'kiln.build.id',
  derivation: 'kiln.build.derivation',
  system: 'kiln.build.system',
  attempt: 'kiln.build.attempt',
  outcome: 'kiln.build.outcome',
  agentId: 'kiln.agent.id',
  output: 'kiln.output.name',
  /** Bytes as sent (LZ4 frames). */
  bytes: 'kiln.upload.bytes',
  /** Bytes of the NAR itself. */
  narBytes: 'kiln.upload.nar_bytes',
} as const;

export const TRACER_NAME = 'kiln';

export function tracer() {
  return trace.getTracer(TRACER_NAME);
}

function digest(kind: string, buildId: string, attempt: number): string {
  return createHash('sha256').update(`kiln ${kind}\0${buildId.toLowerCase()}\0${attempt}`).digest('hex');
}

/** The trace id (32 hex digits) of a build's attempt. */
export function buildTraceId(buildId: string, attempt: number): string {
  return digest('trace', buildId, attempt).slice(0, 32);
}

/** The id of the attempt's root span (the `kiln.build` span the coordinator ends with the attempt). */
export function buildRootSpanId(buildId: string, attempt: number): string {
  return digest('root', buildId, attempt).slice(0, 16);
}

/** The attempt's root span as a parent for spans made anywhere, before or after it is exported. */
export function buildRootSpanContext(buildId: string, attempt: number): SpanContext {
  return { traceId: buildTraceId(buildId, attempt), spanId: buildRootSpanId(buildId, attempt), traceFlags: TraceFlags.SAMPLED, isRemote: true };
}

/** A context whose parent is the attempt's root span. */
export function buildContext(buildId: string, attempt: number): Context {
  return trace.setSpanContext(ROOT_CONTEXT, buildRootSpanContext(buildId, attempt));
}

/**
 * The SDK's id generator, which hands out the ids of a build's root span when asked to
 * (the SDK has no other way to give a span chosen ids), and random ids otherwise.
 */
let forced: { traceId: string; spanId: string } | undefined;
export const buildIdGenerator = {
  generateTraceId(): string {
    return forced?.traceId ?? randomBytes(16).toString('hex');
  },
  generateSpanId(): string {
    return forced?.spanId ?? randomBytes(8).toString('hex');
  },
};

/**
 * Starts (and, with `endTime`, ends) the root span of a build's attempt, with the ids
 * every other span of the attempt already names as their parent.
 */
export function startBuildRootSpan(buildId: string, attempt: number, name: string, attributes: Attributes, startTime: TimeInput): Span {
  forced = { traceId: buildTraceId(buildId, attempt), spanId: buildRootSpanId(buildId, attempt) };
  try {
    // startSpan is synchronous, so no other span can take the forced ids.
    return tracer().startSpan(name, { root: true, attributes, startTime });
  } finally {
    forced = undefined;
  }
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The W3C traceparent of a span context ('' for none). */
export function formatTraceparent(span: SpanContext | undefined): string {
  if (!span || !trace.isSpanContextValid(span)) return '';
  return `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** A context whose parent is the span a W3C traceparent names; the root context for '' or garbage. */
export function contextFromTraceparent(traceparent: string): Context {
  const m = TRACEPARENT.exec(traceparent.trim().toLowerCase());
  if (!m) return ROOT_CONTEXT;
  const span: SpanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true };
  return trace.isSpanContextValid(span) ? trace.setSpanContext(ROOT_CONTEXT, span) : ROOT_CONTEXT;
}
