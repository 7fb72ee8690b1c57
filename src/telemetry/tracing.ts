// OpenTelemetry tracing for a kiln process (coordinator or agent). It starts only when
// the standard OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is
// set; otherwise nothing is registered, the API's tracer stays the no-op one, and kiln
// skips the work that only feeds spans. The exporter, protocol, sampler and resource
// come from the other OTEL_* variables, as the SDK reads them.
import { context, propagation, trace } from '@opentelemetry/api';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { buildIdGenerator } from './build-trace.js';

let enabled = false;

/** Whether spans are recorded and exported in this process. */
export function tracingEnabled(): boolean {
  return enabled;
}

/** Whether the environment asks for traces to be exported. */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return false;
  if ((env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).includes('none')) return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

export interface Tracing {
  readonly enabled: boolean;
  /**
   * Exports what is buffered and stops; the process's spans are no-ops afterwards. A
   * collector that cannot be reached loses those spans but does not fail the shutdown.
   */
  shutdown(): Promise<void>;
}

const OFF: Tracing = { enabled: false, shutdown: async () => {} };

/**
 * Starts tracing for this process when its environment asks for it (the SDK reads the
 * OTEL_* variables from process.env). `serviceName` is the default for
 * OTEL_SERVICE_NAME. Only traces: kiln's metrics are Prometheus's (/metrics) and its
 * logs are pino's, so the SDK's metric and log exporters stay off.
 */
export function startTracing(serviceName: string): Tracing {
  const env = process.env;
  if (enabled || !tracingRequested(env)) return OFF;
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME?.trim() || serviceName,
    idGenerator: buildIdGenerator,
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  enabled = true;
  let stopped: Promise<void> | undefined;
  return {
    enabled: true,
    shutdown() {
      stopped ??= sdk
        .shutdown()
        .catch(() => undefined)
        .finally(() => {
          enabled = false;
          trace.disable();
          context.disable();
          propagation.disable();
        });
      return stopped;
    },
  };
}
