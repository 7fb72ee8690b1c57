// `kiln coordinator` as its own process, on a free port, for tests and benchmarks that
// need the real process: restarts, replicas, crashes, a coordinator under load.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './postgres-server.js';

/** The package root: above test/helpers/ when run from source, above dist/test/helpers/ when compiled. */
const here = dirname(fileURLToPath(import.meta.url));
const ROOT = existsSync(join(here, '..', '..', 'package.json')) ? join(here, '..', '..') : join(here, '..', '..', '..');
/** The compiled CLI (`npm run build` makes it). */
export const KILN_BIN = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** How much of the process's stderr is kept for error messages and checks. */
const STDERR_KEPT = 256 * 1024;
/** How long a stopping coordinator may take before it is killed and its log shown. */
const STOP_MS = 60_000;
/** A stop slower than this is reported with the end of the coordinator's log. */
const SLOW_STOP_S = 3;

export interface CoordinatorProcess {
  child: ChildProcess;
  url: string;
  /** The end of what the process wrote to stderr (its last 256 KiB). */
  stderr(): string;
  /** Sends the signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface CoordinatorProcessOptions {
  dataDir: string;
  databaseUrl?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Node's own options before the script, e.g. `--cpu-prof`. */
  nodeArgs?: string[];
  /** The port to listen on (a restart keeps its address), else a free one. */
  port?: number;
  /** How long it may take to say it listens (default 30 s): a large cache index loads first. */
  startTimeoutMs?: number;
}

export async function startCoordinatorProcess(opts: CoordinatorProcessOptions): Promise<CoordinatorProcess> {
  const port = opts.port ?? (await freePort());
  const args = [...(opts.nodeArgs ?? []), KILN_BIN, 'coordinator', '--listen', `127.0.0.1:${port}`, '--data-dir', opts.dataDir, ...(opts.args ?? [])];
  if (opts.databaseUrl) args.push('--database', opts.databaseUrl);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...opts.env } });
  let stderr = '';
  // A benchmark or test run that dies must not leave its coordinator behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      process.off('exit', killOnExit);
      resolve(code);
    }),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`coordinator did not start:\n${stderr}`)), opts.startTimeoutMs ?? 30_000);
    let listening = false;
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (!listening && stderr.includes('kiln coordinator listening')) {
        listening = true;
        clearTimeout(timer);
        resolve();
      }
      if (stderr.length > 2 * STDERR_KEPT) stderr = stderr.slice(-STDERR_KEPT);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`coordinator exited with ${code}:\n${stderr}`));
    });
  });
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    stderr: () => stderr.slice(-STDERR_KEPT),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      // A coordinator that does not stop is a bug to see, not a benchmark that hangs.
      const timer = setTimeout(() => {
        console.error(`coordinator ${child.pid} did not stop within ${STOP_MS / 1000} s of ${signal}; killed. It said:\n${stderr.slice(-8000)}`);
        child.kill('SIGKILL');
      }, STOP_MS);
      const asked = performance.now();
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
        const seconds = (performance.now() - asked) / 1000;
        if (seconds > SLOW_STOP_S) console.error(`coordinator ${child.pid} took ${seconds.toFixed(1)} s to stop; its last words:\n${stderr.slice(-2000)}`);
      }
    },
  };
}
