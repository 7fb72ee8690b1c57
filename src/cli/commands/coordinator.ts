// `kiln coordinator`: runs the coordinator until SIGINT or SIGTERM.
import { resolve } from 'node:path';
import { startCoordinator, DEFAULT_PORT } from '../../coordinator/coordinator.js';
import { defaultDataDir } from '../../config.js';
import { createLogger } from '../../logger.js';
import { startLocalAgent } from '../local-agent.js';
import { FAILURE_KINDS, DEFAULT_RETRY_POLICY, validateRetryRule, type FailureKind, type RetryRule } from '../../scheduler/retry-policy.js';
import type { Tag } from '../../scheduler/tags.js';
import { priorityFirst, type AllocationPolicy } from '../../scheduler/allocation.js';
import { fairShareByTag } from '../../scheduler/fair-share.js';
import type { CoordinatorOptions } from '../../coordinator/coordinator.js';
import { cacheOptions, configAsFlags, limitOptions, loadConfig, qaOptions, upstreamOptions, type KilnConfig } from '../../coordinator/config-file.js';
import { parseUpstreams } from '../../cache/upstreams/upstream-list.js';
import { parse, secondsFrom, tagsFrom } from '../options.js';
import { UsageError } from '../usage-error.js';
import { parseByteSize } from '../../byte-sizes.js';
import { startTracing } from '../../telemetry/tracing.js';
import { parseBlobStoreLocation, type BlobStoreLocation } from '../../storage/blob-store-url.js';

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  if (!m) throw new UsageError(`--listen ${JSON.stringify(text)} is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`--listen port ${port} is above 65535`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export async function coordinatorCommand(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    listen: { type: 'string', default: `127.0.0.1:${DEFAULT_PORT}` },
    database: { type: 'string' },
    'data-dir': { type: 'string' },
    'nar-dir': { type: 'string' },
    'nar-store': { type: 'string' },
    'nar-redirect-seconds': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'local-agent': { type: 'boolean', default: false },
    'local-agent-tag': { type: 'string', multiple: true },
    lease: { type: 'string' },
    allocation: { type: 'string' },
    config: { type: 'string' },
    retries: { type: 'string' },
    'retry-on': { type: 'string' },
    'retry-backoff': { type: 'string' },
    'retry-tag': { type: 'string', multiple: true },
    timeout: { type: 'string' },
    'max-silent-time': { type: 'string' },
    'max-load-per-cpu': { type: 'string' },
    'min-free-disk-gib': { type: 'string' },
    'min-free-nar-gib': { type: 'string' },
    'max-output-size': { type: 'string' },
    'max-log-size': { type: 'string' },
    'only-submitted': { type: 'boolean' },
    upstream: { type: 'string', multiple: true },
    'upstream-key': { type: 'string', multiple: true },
    'upstream-hit-ttl': { type: 'string' },
    'upstream-miss-ttl': { type: 'string' },
    'cache-ttl': { type: 'string' },
    'cache-negative-ttl': { type: 'string' },
  });
  if (positionals.length) throw new UsageError(`kiln coordinator takes no arguments, got ${positionals.join(' ')}`);
  if (Boolean(values['tls-cert']) !== Boolean(values['tls-key'])) throw new UsageError('--tls-cert and --tls-key go together');
  if (values['nar-dir'] && values['nar-store'] && !values['nar-store'].startsWith('s3:')) {
    throw new UsageError('--nar-dir and a directory --nar-store name the same thing: give one (with s3://, --nar-dir is where uploads are staged)');
  }
  const localAgentTags = tagsFrom(values['local-agent-tag']);
  if (localAgentTags.length > 0 && !values['local-agent']) throw new UsageError('--local-agent-tag is for the agent --local-agent starts');
  const dataDir = resolve(values['data-dir'] ?? defaultDataDir());
  const databaseUrl = values.database ?? process.env.DATABASE_URL;
  const { host, port } = parseListen(values.listen);
  // The configuration file first; flags given on the command line win over it.
  const configPath = values.config ?? process.env.KILN_CONFIG;
  const config = configPath ? await loadConfig(configPath).catch((err: unknown) => {
    throw new UsageError((err as Error).message);
  }) : {};
  const given = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined));
  const settings = { ...configAsFlags(config), ...given } as Parameters<typeof schedulingOptions>[0] & Parameters<typeof storageOptions>[0];
  // Before the coordinator starts, so that every span of this process is exported (when OTEL_* asks).
  const tracing = startTracing('kiln-coordinator');
  const cache = cacheOptions(config, configPath ?? '');
  // The flags win over cache.ttl and cache.negativeTtl of the file.
  if (values['cache-ttl'] !== undefined) cache.cacheTtls = { ...cache.cacheTtls, found: secondsFrom(values['cache-ttl'], '--cache-ttl') };
  if (values['cache-negative-ttl'] !== undefined) cache.cacheTtls = { ...cache.cacheTtls, missing: secondsFrom(values['cache-negative-ttl'], '--cache-negative-ttl') };
  const coordinator = await startCoordinator({
    host,
    port,
    dataDir,
    narDir: values['nar-dir'] ? resolve(values['nar-dir']) : undefined,
    database: databaseUrl ? { url: databaseUrl } : { dataDir: resolve(dataDir, 'db') },
    adminToken: process.env.KILN_ADMIN_TOKEN || undefined,
    dashboardToken: process.env.KILN_DASHBOARD_TOKEN || undefined,
    tls: values['tls-cert'] ? { certFile: values['tls-cert'], keyFile: values['tls-key']! } : undefined,
    ...schedulingOptions(settings),
    ...storageOptions(settings),
    narStoreCredentials: config.storage?.s3,
    ...cache,
    ...limitOptions(config),
    ...qaOptions(config),
    ...upstreamSettings(config, values),
    hooks: config.hooks,
  });
  console.error(`kiln coordinator listening on ${coordinator.url} (data in ${dataDir}, database ${coordinator.database.kind})`);
  console.error(`cache public key: ${coordinator.nixPublicKey}`);
  console.error(`dashboard (read-only): ${coordinator.url}/dashboard/#token=${coordinator.dashboardToken}`);
  if (tracing.enabled) console.error('tracing: exporting spans over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)');
  const local = values['local-agent'] ? await startLocalAgent(coordinator, dataDir, createLogger({ name: 'kiln-agent' }), localAgentTags) : undefined;
  if (local) console.error('local agent running (nix builder, this machine\'s store)');
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      console.error(`kiln coordinator: ${signal}, shutting down`);
      void (local?.shutdown() ?? Promise.resolve())
        .then(() => coordinator.stop())
        .then(() => tracing.shutdown())
        .then(done, done);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  exitIfHeld();
}

/**
 * The upstreams of the file, or those of `--upstream URL` (repeatable) with every
 * `--upstream-key KEY` trusted for each of them, which then replace the file's.
 */
function upstreamSettings(
  config: KilnConfig,
  values: { upstream?: string[]; 'upstream-key'?: string[]; 'upstream-hit-ttl'?: string; 'upstream-miss-ttl'?: string },
): Pick<CoordinatorOptions, 'upstreams' | 'upstreamLifetimes'> {
  const fromFile = upstreamOptions(config);
  const urls = values.upstream ?? [];
  const keys = values['upstream-key'] ?? [];
  if (keys.length > 0 && urls.length === 0) throw new UsageError('--upstream-key is for the caches given with --upstream');
  let upstreams = fromFile.upstreams;
  if (urls.length > 0) {
    if (keys.length === 0) throw new UsageError('--upstream needs --upstream-key: only narinfos signed by a trusted key are used');
    try {
      upstreams = parseUpstreams(urls.map((url) => ({ url, publicKeys: keys })), '--upstream');
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const lifetimes = { ...fromFile.upstreamLifetimes };
  if (values['upstream-hit-ttl'] !== undefined) lifetimes.hitMs = secondsFrom(values['upstream-hit-ttl'], '--upstream-hit-ttl') * 1000;
  if (values['upstream-miss-ttl'] !== undefined) lifetimes.missMs = secondsFrom(values['upstream-miss-ttl'], '--upstream-miss-ttl') * 1000;
  return { upstreams, upstreamLifetimes: lifetimes };
}

/** How long the process may linger after an orderly stop before it exits anyway. */
const LINGER_MS = 5_000;

/**
 * Everything is stopped, so the process should end by itself now. If something still
 * holds it open (a socket or timer nobody closed), an operator's `systemctl stop` must
 * not hang on it: say what it is, then exit.
 */
function exitIfHeld(): void {
  setTimeout(() => {
    console.error(`kiln coordinator: stopped, but still held open by ${describeResources()}; exiting`);
    process.exit(process.exitCode ?? 0);
  }, LINGER_MS).unref();
}

/** What keeps the process alive, counted by kind; sockets by the address they lead to. */
function describeResources(): string {
  const kinds = process.getActiveResourcesInfo();
  // Node's own list of handles (long-standing, though not documented) names sockets' peers.
  const handles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? [];
  const peers = handles.flatMap((h) => {
    const s = h as { remoteAddress?: string; remotePort?: number };
    return s.remoteAddress ? [`${s.remoteAddress}:${s.remotePort}`] : [];
  });
  const counted = (names: string[]) => [...new Map(names.map((n) => [n, names.filter((m) => m === n).length]))].map(([n, c]) => `${n} ×${c}`).join(', ');
  return `${counted(kinds)}${peers.length > 0 ? `; sockets to ${counted(peers)}` : ''}`;
}

/** The farm's scheduling settings from the command line (a configuration file comes later). */
export function schedulingOptions(values: {
  lease?: string;
  allocation?: string;
  retries?: string;
  'retry-on'?: string;
  'retry-backoff'?: string;
  'retry-tag'?: string[];
  timeout?: string;
  'max-silent-time'?: string;
  'max-load-per-cpu'?: string;
  'min-free-disk-gib'?: string;
  'only-submitted'?: boolean;
}): Partial<CoordinatorOptions> {
  const farm = { ...DEFAULT_RETRY_POLICY.farm };
  if (values.retries !== undefined) farm.maxAttempts = 1 + secondsFrom(values.retries, '--retries');
  if (values['retry-on'] !== undefined) farm.on = failureKinds(values['retry-on'], '--retry-on');
  if (values['retry-backoff'] !== undefined) {
    farm.initialBackoffMs = secondsFrom(values['retry-backoff'], '--retry-backoff') * 1000;
    farm.maxBackoffMs = Math.max(farm.maxBackoffMs, farm.initialBackoffMs);
  }
  const byTag = (values['retry-tag'] ?? []).map((text) => retryTagRule(text, farm));
  try {
    validateRetryRule(farm, 'retry options');
    for (const r of byTag) validateRetryRule(r.rule, `--retry-tag ${r.tag.key}=${r.tag.value}`);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const leaseSeconds = values.lease !== undefined ? secondsFrom(values.lease, '--lease') : undefined;
  if (leaseSeconds === 0) throw new UsageError('--lease must be at least 1 second: an agent holds its builds that long without reporting');
  return {
    leaseMs: leaseSeconds !== undefined ? leaseSeconds * 1000 : undefined,
    allocationPolicy: allocationFrom(values.allocation ?? 'priority-first'),
    retryPolicy: { farm, byTag },
    defaultLimits: { timeoutSeconds: secondsFrom(values.timeout, '--timeout'), maxSilentSeconds: secondsFrom(values['max-silent-time'], '--max-silent-time') },
    loadLimits: {
      maxLoadPerCpu: numberFrom(values['max-load-per-cpu'], '--max-load-per-cpu'),
      minFreeDiskBytes: numberFrom(values['min-free-disk-gib'], '--min-free-disk-gib') * 2 ** 30,
    },
    submitMissingInputs: !values['only-submitted'],
  };
}

/** The NAR and log storage's settings from the command line (or the configuration file's storage part). */
export function storageOptions(values: {
  'min-free-nar-gib'?: string;
  'max-output-size'?: string;
  'max-log-size'?: string;
  'nar-store'?: string;
  'nar-redirect-seconds'?: string;
}): Pick<CoordinatorOptions, 'minFreeNarBytes' | 'maxOutputBytes' | 'maxLogBytes' | 'narStore' | 'narRedirectSeconds'> {
  let narStore: BlobStoreLocation | undefined;
  try {
    narStore = values['nar-store'] === undefined ? undefined : parseBlobStoreLocation(values['nar-store']);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const redirect = values['nar-redirect-seconds'];
  if (redirect !== undefined && narStore?.kind !== 's3') throw new UsageError('--nar-redirect-seconds is for an s3:// --nar-store (a directory is served by kiln)');
  return {
    narStore,
    narRedirectSeconds: redirect === undefined ? undefined : numberFrom(redirect, '--nar-redirect-seconds'),
    minFreeNarBytes: Math.round(numberFrom(values['min-free-nar-gib'], '--min-free-nar-gib') * 2 ** 30),
    maxOutputBytes: sizeFrom(values['max-output-size'], '--max-output-size'),
    maxLogBytes: sizeFrom(values['max-log-size'], '--max-log-size'),
  };
}

/** A size setting (bytes, or 512M, 2G, ...); undefined when not given (the coordinator's default). */
function sizeFrom(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseByteSize(text, what);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function allocationFrom(text: string): AllocationPolicy {
  if (text === 'priority-first') return priorityFirst;
  const m = /^fair-share:([^=\s]+)$/.exec(text);
  if (m) return fairShareByTag(m[1]!);
  throw new UsageError(`--allocation ${JSON.stringify(text)} is not priority-first or fair-share:TAG-KEY`);
}

function numberFrom(text: string | undefined, what: string): number {
  if (text === undefined) return 0;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${what} must be a number of at least 0, not ${JSON.stringify(text)}`);
  return n;
}

function failureKinds(text: string, what: string): FailureKind[] {
  return text.split(',').filter(Boolean).map((k) => {
    if (!(FAILURE_KINDS as readonly string[]).includes(k)) throw new UsageError(`${what}: ${JSON.stringify(k)} is not one of ${FAILURE_KINDS.join(', ')}`);
    return k as FailureKind;
  });
}

/** `KEY=VALUE:RETRIES[:KIND,...[:BACKOFF-SECONDS]]`: the rule for builds with that tag. */
function retryTagRule(text: string, farm: RetryRule): { tag: Tag; rule: RetryRule } {
  const m = /^([^=:]+)=([^:]*):(\d+)(?::([^:]*))?(?::(\d+))?$/.exec(text);
  if (!m) throw new UsageError(`--retry-tag ${JSON.stringify(text)} is not KEY=VALUE:RETRIES[:KIND,...[:BACKOFF-SECONDS]]`);
  const backoffMs = m[5] !== undefined ? Number(m[5]) * 1000 : farm.initialBackoffMs;
  return {
    tag: { key: m[1]!, value: m[2]! },
    rule: {
      maxAttempts: 1 + Number(m[3]),
      on: m[4] ? failureKinds(m[4], '--retry-tag') : farm.on,
      initialBackoffMs: backoffMs,
      maxBackoffMs: Math.max(farm.maxBackoffMs, backoffMs),
    },
  };
}
