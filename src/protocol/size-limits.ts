// The coordinator's size limits on what an agent hands in (Hydra's max_output_size and
// max_log_size): the largest NAR of one output and the longest build log, both counted
// uncompressed. Both sides agree here on the defaults, the words of a refusal and its
// status, so that the agent's own early check says what the coordinator would.
import { Code, ConnectError } from '@connectrpc/connect';
import { formatBytes } from '../byte-sizes.js';

export interface SizeLimits {
  /** Bytes of one output's NAR (uncompressed); 0: no limit. */
  maxOutputBytes: number;
  /** Bytes of one attempt's log (uncompressed); 0: no limit. */
  maxLogBytes: number;
}

/** Hydra's defaults: 2 GiB per output, 64 MiB of log. */
export const DEFAULT_SIZE_LIMITS: SizeLimits = { maxOutputBytes: 2 * 2 ** 30, maxLogBytes: 64 * 2 ** 20 };

/**
 * The status of a refusal for size. Not RESOURCE_EXHAUSTED (the agent gives a build back
 * for that: the coordinator's disk may have room later) nor any status the agent waits
 * out: the same build makes an output as large again, so the build fails.
 */
export const TOO_LARGE_CODE = Code.OutOfRange;

/** Whether a byte count is over a limit (0: none). */
export function overLimit(bytes: number | bigint, limit: number): boolean {
  return limit > 0 && BigInt(bytes) > BigInt(limit);
}

/** Why an output is refused: "output /nix/store/…-x is 3.1 GiB, over the coordinator's max-output-size of 2 GiB (--max-output-size)". */
export function outputTooLargeMessage(storePath: string, bytes: number | bigint, limit: number, atLeast = false): string {
  return `output ${storePath} is ${atLeast ? 'more than ' : ''}${formatBytes(Number(bytes))}, over the coordinator's max-output-size of ${formatBytes(limit)} (--max-output-size)`;
}

/** Why a log is refused (or its build stopped): it passed the limit. */
export function logTooLargeMessage(buildId: string, limit: number): string {
  return `the log of build ${buildId} passed the coordinator's max-log-size of ${formatBytes(limit)} (--max-log-size)`;
}

/** Which limit a refusal says was passed, if it is a refusal for size. */
export function tooLargeRefusal(err: unknown): 'output' | 'log' | undefined {
  if (!(err instanceof ConnectError) || err.code !== TOO_LARGE_CODE) return undefined;
  if (err.rawMessage.includes('(--max-output-size)')) return 'output';
  if (err.rawMessage.includes('(--max-log-size)')) return 'log';
  return undefined;
}
