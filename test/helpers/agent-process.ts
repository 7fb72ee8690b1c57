// `kiln agent run` as a real child process, for end-to-end tests.
import { spawn, type ChildProcess } from 'node:child_process';
import type { AdminClient } from '../../src/cli/admin-client.js';
import { KILN_BIN } from './coordinator.js';
import { CHROOT_STORE_CONFIG, NIX_CONFIG } from './nix.js';

export interface AgentProcess {
  child: ChildProcess;
  /** Everything the agent logged so far. */
  output(): string;
  /** SIGKILL, as a machine that dies would. */
  kill(): Promise<void>;
  /** SIGTERM and wait for the process to end. */
  stop(): Promise<void>;
}

/** Nix settings for an agent building in a chroot store of its own, as root. */
export const AGENT_NIX_CONFIG = [NIX_CONFIG, ...CHROOT_STORE_CONFIG].join('\n');

export type BuilderName = 'nix' | 'local';

export function startAgentProcess(opts: {
  coordinatorUrl: string;
  id: string;
  password: string;
  /** The agent's own store: a chroot store for nix, a store root for local. */
  store: string;
  builder?: BuilderName;
  maxParallel?: number;
  extraArgs?: string[];
  /** More environment for the process (e.g. OTEL_* for tracing). */
  env?: NodeJS.ProcessEnv;
}): AgentProcess {
  const args = [KILN_BIN, 'agent', 'run', '--coordinator', opts.coordinatorUrl, '--id', opts.id, '--password', opts.password, '--builder', opts.builder ?? 'nix',
    '--store', opts.store, '--max-parallel', String(opts.maxParallel ?? 2), '--system', 'x86_64-linux',
    // Its own state directory (its Nix's narinfo cache among it), as on separate machines.
    '--state-dir', `${opts.store}-state`, ...(opts.extraArgs ?? [])];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, NIX_CONFIG: AGENT_NIX_CONFIG, KILN_LOG_LEVEL: 'debug', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    output: () => log,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A new agent of the coordinator (its id and a password), run as a `kiln agent run` process. */
export async function startNewAgentProcess(
  t: { coordinator: { url: string }; admin: AdminClient },
  name: string,
  opts: Omit<Parameters<typeof startAgentProcess>[0], 'coordinatorUrl' | 'id' | 'password'>,
): Promise<AgentProcess> {
  const { agent } = await t.admin.createAgent({ name });
  const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
  return startAgentProcess({ coordinatorUrl: t.coordinator.url, id: agent!.id, password, ...opts });
}
