// Runs a child process for a builder: output streamed to the build log, cancellable by
// an AbortSignal, with an overall timeout and a silence timeout, and a bounded copy of
// its output kept for error messages.
import { spawn, type SpawnOptions } from 'node:child_process';

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why kiln stopped it, if it did. */
  stoppedBy?: 'abort' | 'timeout' | 'silence';
  /** The last bytes of stdout and stderr together, for error messages. */
  tail: string;
  /** All of stdout, when asked for (small outputs only, e.g. a list of paths). */
  stdout: string;
}

export interface RunOptions extends SpawnOptions {
  signal?: AbortSignal;
  onOutput?: (chunk: Buffer) => void;
  timeoutMs?: number;
  silenceMs?: number;
  keepStdout?: boolean;
  /** Bytes written to its standard input (closed after them); none: stdin is /dev/null. */
  input?: Buffer;
}

const TAIL_BYTES = 16 * 1024;

export function runProcess(command: string, args: string[], opts: RunOptions = {}): Promise<ProcessResult> {
  const { signal, onOutput, timeoutMs, silenceMs, keepStdout, input, ...spawnOptions } = opts;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...spawnOptions, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
    if (input) {
      // A child that exits without reading all of it closes the pipe: not an error here.
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(input);
    }
    let tail = Buffer.alloc(0);
    let stdout = '';
    let stoppedBy: ProcessResult['stoppedBy'];
    let silenceTimer: NodeJS.Timeout | undefined;

    // The child leads its own process group, so stopping it stops what it started too.
    const stop = (why: NonNullable<ProcessResult['stoppedBy']>) => {
      stoppedBy ??= why;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const armSilence = () => {
      if (!silenceMs) return;
      clearTimeout(silenceTimer);
      silenceTimer = setTimeout(() => stop('silence'), silenceMs);
    };
    const onData = (chunk: Buffer, isStdout: boolean) => {
      armSilence();
      onOutput?.(chunk);
      if (isStdout && keepStdout) stdout += chunk.toString('utf8');
      tail = Buffer.concat([tail, chunk]);
      if (tail.length > TAIL_BYTES) tail = tail.subarray(tail.length - TAIL_BYTES);
    };
    child.stdout!.on('data', (c: Buffer) => onData(c, true));
    child.stderr!.on('data', (c: Buffer) => onData(c, false));
    armSilence();
    const overall = timeoutMs ? setTimeout(() => stop('timeout'), timeoutMs) : undefined;
    const onAbort = () => stop('abort');
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });

    child.once('error', (err) => {
      clearTimeout(overall);
      clearTimeout(silenceTimer);
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
    child.once('close', (code, sig) => {
      clearTimeout(overall);
      clearTimeout(silenceTimer);
      signal?.removeEventListener('abort', onAbort);
      resolve({ code, signal: sig, stoppedBy, tail: tail.toString('utf8'), stdout });
    });
  });
}

/** The last lines of a process's output, for an error message. */
export function lastLines(result: ProcessResult, n = 20): string {
  return result.tail.trimEnd().split('\n').slice(-n).join('\n');
}
