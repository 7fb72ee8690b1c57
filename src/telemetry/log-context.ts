// Trace ids on log lines: pino calls this for every line, so a line logged while a
// build's span is active carries that trace's id beside the build id (no span, no field).
import { context, trace } from '@opentelemetry/api';

export function traceLogFields(): { traceId?: string; spanId?: string } {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const { traceId, spanId } = span.spanContext();
  return trace.isSpanContextValid(span.spanContext()) ? { traceId, spanId } : {};
}
