// `kiln agent run`: runs an agent until SIGINT/SIGTERM (drains on the first signal,
// stops at once on the second). `--coordinator` may be given once per replica.
import { mkdirSync } from 'node:fs';
import { ConnectError } from '@connectrpc/connect';
import { arch, cpus, homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent } from '../../agent/agent.js';
import { useAgentHeapSettings } from '../../agent/heap-settings.js';
import type { Builder, CacheInfo, Substituter } from '../../agent/builders/builder.js';
import { parseTrustedKeys } from '../../store/narinfo-trust.js';
import { LocalBuilder } from '../../agent/builders/local.js';
import { NixBuilder } from '../../agent/builders/nix.js';
import { machineSystemFeatures, type AgentNixSettings } from '../../agent/builders/nix-settings.js';
import { validateAgentFeatures, type AgentFeatures } from '../../scheduler/placement.js';
import { DEFAULT_COORDINATOR_URL } from '../../config.js';
import { createLogger } from '../../logger.js';
import { validateStoreDir } from '../../store/store-path.js';
import { intFrom, parse, tagsFrom } from '../options.js';
import { UsageError } from '../usage-error.js';
import { startTracing } from '../../telemetry/tracing.js';
import { credentialsByRegistration } from '../../agent/registration.js';

/** The Nix system name of this machine, e.g. x86_64-linux. */
export function hostSystem(): string {
  const cpu = { x64: 'x86_64', arm64: 'aarch64', ia32: 'i686', arm: 'armv7l', riscv64: 'riscv64' }[arch()] ?? arch();
  return `${cpu}-${process.platform}`;
}

/**
 * The agent's system features: those given (`--system-feature`, replacing the default as
 * Nix's `system-features` setting does), else the machine's Nix's; mandatory ones on top.
 */
export function agentFeatures(given: { supported?: string[]; mandatory?: string[] }, env: NodeJS.ProcessEnv = process.env): AgentFeatures {
  const supported = given.supported?.length ? given.supported : (machineSystemFeatures(env) ?? []);
  try {
    return validateAgentFeatures({ supported, mandatory: given.mandatory ?? [] }, 'agent');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Where an agent keeps its own files (Nix's narinfo cache among them), made if missing. */
export function agentStateDir(agentId: string, given: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const dir = resolve(given ?? join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'kiln', `agent-${agentId}`));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export async function runAgentCommand(args: string[]): Promise<void> {
  useAgentHeapSettings();
  const { values, positionals } = parse(args, {
    coordinator: { type: 'string', multiple: true },
    'retry-for': { type: 'string' },
    id: { type: 'string' },
    password: { type: 'string' },
    'register-token': { type: 'string' },
    name: { type: 'string' },
    'credentials-file': { type: 'string' },
    builder: { type: 'string', default: 'nix' },
    'max-parallel': { type: 'string' },
    system: { type: 'string', multiple: true },
    tag: { type: 'string', multiple: true },
    'system-feature': { type: 'string', multiple: true },
    'mandatory-feature': { type: 'string', multiple: true },
    'state-dir': { type: 'string' },
    store: { type: 'string' },
    'store-dir': { type: 'string' },
    timeout: { type: 'string' },
    'max-silent-time': { type: 'string' },
    substituter: { type: 'string', multiple: true },
    'trusted-public-key': { type: 'string', multiple: true },
  });
  if (positionals.length) throw new UsageError(`kiln agent run takes no arguments, got ${positionals.join(' ')}`);
  const log = createLogger({ name: 'kiln-agent' });
  const { agentId, password } = await agentCredentials(values, log);
  const maxParallel = intFrom(values['max-parallel'], '--max-parallel') ?? Math.max(1, Math.floor(cpus().length / 2));
  if (maxParallel < 1) throw new UsageError('--max-parallel must be at least 1');
  const features = agentFeatures({ supported: values['system-feature'], mandatory: values['mandatory-feature'] });
  const stateDir = agentStateDir(agentId, values['state-dir']);
  const builder = builderFactory(values.builder, values.store, values['store-dir'], { cacheHome: join(stateDir, 'cache'), systemFeatures: features.supported });
  const timeoutSeconds = intFrom(values.timeout, '--timeout') ?? 0;
  const maxSilentSeconds = intFrom(values['max-silent-time'], '--max-silent-time') ?? 0;
  if (timeoutSeconds < 0 || maxSilentSeconds < 0) throw new UsageError('--timeout and --max-silent-time are seconds, zero for no limit');
  const retryFor = intFrom(values['retry-for'], '--retry-for');
  if (retryFor !== undefined && retryFor < 1) throw new UsageError('--retry-for is seconds, at least 1');
  const substituters = ownSubstituters(values.substituter ?? [], values['trusted-public-key'] ?? []);
  const tracing = startTracing('kiln-agent');
  const agent = new Agent({
    coordinatorUrls: coordinatorUrls(values.coordinator),
    agentId,
    password,
    systems: values.system?.length ? values.system : [hostSystem()],
    maxParallel,
    tags: tagsFrom(values.tag),
    features,
    builder,
    limits: { timeoutSeconds, maxSilentSeconds },
    ...(retryFor !== undefined ? { retryForMs: retryFor * 1000 } : {}),
    substituters,
    log,
  });
  agent.start();
  await new Promise<void>((done) => {
    // A Drain from the coordinator ends the agent too.
    void agent.stopped.then(done);
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
  // What the last builds traced is exported before the process ends.
  await tracing.shutdown();
}

/** Where a registered agent keeps its credentials unless --credentials-file says. */
export function defaultCredentialsFile(name: string, stateDir: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (stateDir !== undefined) return resolve(stateDir, 'credentials.json');
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'kiln', `agent-${name}.credentials.json`);
}

/** --id and --password, or those a registration token got (once) and the credentials file keeps. */
async function agentCredentials(
  values: { id?: string; password?: string; 'register-token'?: string; name?: string; 'credentials-file'?: string; 'state-dir'?: string; coordinator?: string[] },
  log: ReturnType<typeof createLogger>,
): Promise<{ agentId: string; password: string }> {
  const tokenFile = values['register-token'];
  if (tokenFile === undefined) {
    if (values.name !== undefined || values['credentials-file'] !== undefined) throw new UsageError('--name and --credentials-file are for --register-token');
    const agentId = values.id ?? process.env.KILN_AGENT_ID;
    const password = values.password ?? process.env.KILN_AGENT_PASSWORD;
    if (!agentId || !password) throw new UsageError('kiln agent run needs --id and --password (or KILN_AGENT_ID and KILN_AGENT_PASSWORD), or --register-token FILE --name N');
    return { agentId, password };
  }
  if (values.id !== undefined || values.password !== undefined) throw new UsageError('--register-token replaces --id and --password: give one or the other');
  const name = values.name?.trim();
  if (!name) throw new UsageError('--register-token needs --name N, the name the agent registers with');
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new UsageError(`--name ${JSON.stringify(name)}: letters, digits, ".", "_" and "-" only`);
  const credentialsFile = resolve(values['credentials-file'] ?? defaultCredentialsFile(name, values['state-dir']));
  try {
    const got = await credentialsByRegistration({ coordinatorUrl: coordinatorUrls(values.coordinator)[0]!, tokenFile, name, credentialsFile });
    log.info({ agentId: got.agentId, credentialsFile }, got.registered ? 'registered with the coordinator' : 'using the credentials kept from registration');
    return got;
  } catch (err) {
    if (err instanceof ConnectError) throw new UsageError(`registration refused: ${err.rawMessage}`);
    throw new UsageError((err as Error).message);
  }
}

/**
 * The coordinators to talk to: every --coordinator, else $KILN_COORDINATOR (several
 * separated by commas), else the default. Each must be an http(s) URL.
 */
export function coordinatorUrls(given: string[] | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  const urls = given?.length ? given : (env.KILN_COORDINATOR ?? '').split(',').map((u) => u.trim()).filter(Boolean);
  if (urls.length === 0) return [DEFAULT_COORDINATOR_URL];
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new UsageError(`--coordinator ${JSON.stringify(url)} is not a URL (e.g. http://coordinator:8745)`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`--coordinator ${JSON.stringify(url)}: only http and https URLs`);
  }
  return [...new Set(urls)];
}

/** `--substituter URL` (repeatable) with `--trusted-public-key KEY` (repeatable, trusted for each of them). */
function ownSubstituters(urls: string[], keys: string[]): Substituter[] {
  if (urls.length > 0 && keys.length === 0) throw new UsageError('--substituter needs --trusted-public-key: nothing unsigned is used');
  if (keys.length > 0 && urls.length === 0) throw new UsageError('--trusted-public-key is for the caches given with --substituter');
  try {
    parseTrustedKeys(keys);
  } catch (err) {
    throw new UsageError(`--trusted-public-key: ${(err as Error).message}`);
  }
  for (const url of urls) if (!/^https?:\/\//.test(url)) throw new UsageError(`--substituter ${JSON.stringify(url)} is not an http:// or https:// URL`);
  return urls.map((url) => ({ url: url.replace(/\/+$/, ''), publicKeys: keys }));
}

/** Makes the chosen builder once the coordinator has said where its cache is. */
function builderFactory(
  name: string | undefined,
  storeRoot: string | undefined,
  storeDir: string | undefined,
  nixSettings: AgentNixSettings,
): (cache: CacheInfo) => Builder {
  switch (name) {
    case 'nix':
      // Nix's own configuration says which store directory it uses.
      if (storeDir !== undefined) throw new UsageError('--store-dir is for --builder local; Nix takes its store directory from its configuration');
      return (cache) => new NixBuilder({ cache, storeRoot, settings: nixSettings });
    case 'local':
      if (storeDir !== undefined) {
        try {
          validateStoreDir(storeDir);
        } catch (err) {
          throw new UsageError(`--store-dir: ${(err as Error).message}`);
        }
      }
      return (cache) => new LocalBuilder({ cache, storeRoot, storeDir });
    default:
      throw new UsageError(`--builder ${JSON.stringify(name)} is not one of: nix, local`);
  }
}
