// A logger that keeps what it is told, so that a test can wait for a line (an agent's
// retry, say) instead of sleeping.
import { pino } from 'pino';
import type { Logger } from '../../src/logger.js';

export type LogLine = { msg: string; level: number } & Record<string, unknown>;

export interface LogCapture {
  log: Logger;
  lines: LogLine[];
  /** Resolves with the first line (kept or to come) that `match` accepts; rejects after `timeoutMs`. */
  waitFor(match: (line: LogLine) => boolean, timeoutMs: number, what: string): Promise<LogLine>;
}

export function captureLog(): LogCapture {
  const lines: LogLine[] = [];
  const waiters = new Set<(line: LogLine) => void>();
  const log = pino(
    { level: 'debug' },
    {
      write(text: string) {
        const line = JSON.parse(text) as LogLine;
        lines.push(line);
        for (const w of [...waiters]) w(line);
        if (process.env.KILN_TEST_LOG) process.stderr.write(text);
      },
    },
  );
  return {
    log,
    lines,
    waitFor(match, timeoutMs, what) {
      const found = lines.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; the last lines:\n${lines.slice(-15).map((l) => JSON.stringify(l)).join('\n')}`));
        }, timeoutMs);
        const waiter = (line: LogLine) => {
          if (!match(line)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(line);
        };
        waiters.add(waiter);
      });
    },
  };
}
