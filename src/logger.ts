// kiln's one logger: structured JSON lines (pino), to stderr so that stdout stays for
// command output.
import { pino, type Logger as PinoLogger } from 'pino';
import { traceLogFields } from './telemetry/log-context.js';

export type Logger = PinoLogger;

export function createLogger(opts: { name: string; level?: string }): Logger {
  return pino({ name: opts.name, level: opts.level ?? process.env.KILN_LOG_LEVEL ?? 'info', mixin: traceLogFields }, pino.destination(2));
}

/** A logger that drops everything, for library use and tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
