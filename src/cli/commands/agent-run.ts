// `kiln agent run`: runs an agent until SIGINT/SIGTERM (drains on the first signal,
// stops at once on the second).
import { arch, cpus } from 'node:os';
import { Agent } from '../../agent/agent.js';
import { NixBuilder } from '../../agent/builders/nix.js';
import { coordinatorUrl } from '../../config.js';
import { createLogger } from '../../logger.js';
import { intFrom, parse, tagsFrom } from '../options.js';
import { UsageError } from '../usage-error.js';

/** The Nix system name of this machine, e.g. x86_64-linux. */
export function hostSystem(): string {
  const cpu = { x64: 'x86_64', arm64: 'aarch64', ia32: 'i686', arm: 'armv7l', riscv64: 'riscv64' }[arch()] ?? arch();
  return `${cpu}-${process.platform}`;
}

export async function runAgentCommand(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    coordinator: { type: 'string' },
    id: { type: 'string' },
    password: { type: 'string' },
    builder: { type: 'string', default: 'nix' },
    'max-parallel': { type: 'string' },
    system: { type: 'string', multiple: true },
    tag: { type: 'string', multiple: true },
    store: { type: 'string' },
  });
  if (positionals.length) throw new UsageError(`kiln agent run takes no arguments, got ${positionals.join(' ')}`);
  const agentId = values.id ?? process.env.KILN_AGENT_ID;
  const password = values.password ?? process.env.KILN_AGENT_PASSWORD;
  if (!agentId || !password) throw new UsageError('kiln agent run needs --id and --password (or KILN_AGENT_ID and KILN_AGENT_PASSWORD)');
  const maxParallel = intFrom(values['max-parallel'], '--max-parallel') ?? Math.max(1, Math.floor(cpus().length / 2));
  if (maxParallel < 1) throw new UsageError('--max-parallel must be at least 1');
  const builderName = values.builder;
  if (builderName !== 'nix') throw new UsageError(`--builder ${JSON.stringify(builderName)} is not one of: nix`);
  const log = createLogger({ name: 'kiln-agent' });
  const agent = new Agent({
    coordinatorUrl: coordinatorUrl(values.coordinator),
    agentId,
    password,
    systems: values.system?.length ? values.system : [hostSystem()],
    maxParallel,
    tags: tagsFrom(values.tag),
    builder: (cache) => new NixBuilder({ cache, storeRoot: values.store }),
    log,
  });
  agent.start();
  await new Promise<void>((done) => {
    process.once('SIGINT', () => {
      log.info('SIGINT: draining (a second signal stops at once)');
      process.once('SIGINT', () => void agent.shutdown().then(done));
      process.once('SIGTERM', () => void agent.shutdown().then(done));
      void agent.drain().then(done);
    });
    process.once('SIGTERM', () => {
      log.info('SIGTERM: stopping');
      void agent.shutdown().then(done);
    });
  });
}
