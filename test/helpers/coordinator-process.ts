// `kiln coordinator` as its own process, on a free port, for tests that need the real
// process: restarts, replicas, crashes.
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './postgres-server.js';
import { KILN_BIN } from './coordinator.js';

export interface CoordinatorProcess {
  child: ChildProcess;
  url: string;
  stderr(): string;
  /** Sends the signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startCoordinatorProcess(opts: { dataDir: string; databaseUrl?: string; args?: string[]; env?: NodeJS.ProcessEnv }): Promise<CoordinatorProcess> {
  const port = await freePort();
  const args = [KILN_BIN, 'coordinator', '--listen', `127.0.0.1:${port}`, '--data-dir', opts.dataDir, ...(opts.args ?? [])];
  if (opts.databaseUrl) args.push('--database', opts.databaseUrl);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...opts.env } });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`coordinator did not start:\n${stderr}`)), 30_000);
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (stderr.includes('kiln coordinator listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`coordinator exited with ${code}:\n${stderr}`));
    });
  });
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
