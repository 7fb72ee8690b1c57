// The agent's side of a build's trace: its spans continue the assignment's (the
// traceparent in AssignBuild), and its upload calls carry their span's traceparent in
// the request headers, so the coordinator's spans for them join the same trace.
import { context, INVALID_SPAN_CONTEXT, propagation, trace, SpanStatusCode, type Attributes, type Span } from '@opentelemetry/api';
import type { Interceptor } from '@connectrpc/connect';
import type { AssignBuild } from '../../gen/kiln/v1/agent_pb.js';
import { parseDerivation } from '../store/derivation.js';
import { ATTR, contextFromTraceparent, tracer } from './build-trace.js';
import { tracingEnabled } from './tracing.js';

/** Puts the active span's trace context (W3C traceparent) in every call's request headers. */
export const traceHeaders: Interceptor = (next) => (req) => {
  propagation.inject(context.active(), req.header, { set: (headers, key, value) => headers.set(key, value) });
  return next(req);
};

/** One build on the agent: a span with a child for each phase the builder goes through. */
export interface AgentBuildTrace {
  /** Runs `fn` with the build's span (or its current phase's) active. */
  within<T>(fn: () => T): T;
  /** The builder moved on: setup (fetching, clearing outputs) is over and the build runs. */
  phase(name: 'build'): void;
  /** The builder is done (uploads follow, as children of the build's span). */
  builderDone(): void;
  end(outcome: string, error?: string): void;
}

const UNTRACED: AgentBuildTrace = { within: (fn) => fn(), phase: () => {}, builderDone: () => {}, end: () => {} };
const PHASE_SPANS = { build: 'kiln.agent.run' } as const;

export function traceAgentBuild(assign: AssignBuild, agentId: string): AgentBuildTrace {
  if (!tracingEnabled()) return UNTRACED;
  const attributes: Attributes = {
    [ATTR.buildId]: assign.buildId,
    [ATTR.derivation]: assign.derivationPath,
    [ATTR.attempt]: assign.attempt,
    [ATTR.agentId]: agentId,
  };
  try {
    attributes[ATTR.system] = parseDerivation(assign.derivation).platform;
  } catch {
    // The builder reports a derivation it cannot read; the span goes without a system.
  }
  const build = tracer().startSpan('kiln.agent.build', { attributes }, contextFromTraceparent(assign.traceparent));
  const buildContext = trace.setSpan(context.active(), build);
  let phase: Span | undefined = tracer().startSpan('kiln.agent.setup', { attributes: { [ATTR.buildId]: assign.buildId } }, buildContext);
  return {
    within: (fn) => context.with(buildContext, fn),
    phase(name) {
      phase?.end();
      phase = tracer().startSpan(PHASE_SPANS[name], { attributes: { [ATTR.buildId]: assign.buildId } }, buildContext);
    },
    builderDone() {
      phase?.end();
      phase = undefined;
    },
    end(outcome, error) {
      phase?.end();
      build.setAttribute(ATTR.outcome, outcome);
      if (error) build.setStatus({ code: SpanStatusCode.ERROR, message: error });
      build.end();
    },
  };
}

const NO_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/**
 * Runs `fn` in a span, child of the active one, that ends when `fn` settles (with an
 * error status when it throws). With tracing off, `fn` just runs.
 */
export async function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  if (!tracingEnabled()) return fn(NO_SPAN);
  const parent = context.active();
  const span = tracer().startSpan(name, { attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    throw err;
  } finally {
    span.end();
  }
}
