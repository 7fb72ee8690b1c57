// The coordinator's configuration file: JSON, or a module (kiln.config.ts / .js / .mjs)
// whose default export is the same object. It is checked when the coordinator starts,
// every mistake named with its place in the file; the scheduling part becomes the same
// settings as the command-line flags (which win where both are given), so there is one
// way each setting is read.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { HookSpec } from '../hooks/hook-specs.js';
import { parseCompressions } from '../substitutes/compressions.js';
import { parseRetention, type RetentionConfig } from '../substitutes/retention.js';
import type { CoordinatorOptions } from './coordinator.js';
import { DEFAULT_INPUT_LIMITS, inputLimits, type DerivationLimits } from '../protocol/limits.js';
import { parseUpstreams, type UpstreamSpec } from '../cache/upstreams/upstream-list.js';
import { parseByteSize } from '../byte-sizes.js';
import { DURATION_EXAMPLES, parseDuration } from '../durations.js';
import { DEFAULT_FOD_CHECK_SCHEDULE } from '../qa/fod-check-schedule.js';
import { validatePriority } from '../scheduler/build-changes.js';
import { parseTag, validateTags } from '../scheduler/tags.js';

export interface KilnConfig {
  scheduling?: {
    /** priority-first, or fair-share:TAG-KEY */
    allocation?: string;
    leaseSeconds?: number;
    timeoutSeconds?: number;
    maxSilentSeconds?: number;
    maxLoadPerCpu?: number;
    minFreeDiskGiB?: number;
    /** Submit builds for inputs nothing builds (default true). */
    submitMissingInputs?: boolean;
  };
  retry?: {
    /** Attempts after the first. */
    retries?: number;
    on?: string[];
    backoffSeconds?: number;
    byTag?: { tag: string; retries: number; on?: string[]; backoffSeconds?: number }[];
  };
  hooks?: HookSpec[];
  /** The built-in hooks: `publish: false` turns publishing off (an operator's hook may then take its name). */
  builtinHooks?: {
    publish?: boolean | { concurrency?: number; maxAttempts?: number; timeoutSeconds?: number };
  };
  cache?: {
    /** NAME or NAME:LEVEL: lz4 (always: agents upload it), zstd, gzip. */
    compressions?: string[];
    /** Cache-Control max-age of a narinfo found, in seconds (default 3600; `--cache-ttl`). */
    ttl?: number;
    /** Of one whose path entered the cache within the last hour (default 300). */
    freshTtl?: number;
    /** Of a narinfo not found (default 60; `--cache-negative-ttl`). */
    negativeTtl?: number;
  };
  storage?: {
    /** Uploads are refused while the NAR directory has less free than this many GiB (`--min-free-nar-gib`). */
    minFreeNarGiB?: number;
    /** The largest NAR of one output taken (`--max-output-size`): bytes, or a size such as "2G" (default 2 GiB; 0: none). */
    maxOutputSize?: number | string;
    /** The longest build log taken (`--max-log-size`): bytes, or a size such as "64M" (default 64 MiB; 0: none). */
    maxLogSize?: number | string;
    /** Where finished NARs live (`--nar-store`): a directory, or s3://BUCKET/PREFIX?endpoint=URL&region=R. */
    narStore?: string;
    /** Seconds a redirect of a NAR download to the store's presigned URL lasts (`--nar-redirect-seconds`; 0: kiln streams it). */
    narRedirectSeconds?: number;
    /** Credentials for an s3:// narStore (without them: the AWS_* variables, then ~/.aws). */
    s3?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  };
  /** What `kiln cache gc` keeps. */
  retention?: RetentionConfig;
  /** What one request may carry (src/protocol/limits.ts has the defaults). */
  limits?: {
    /** Bytes per message, by RPC method name (e.g. { "SubmitBuilds": 134217728 }). */
    messageBytes?: Record<string, number>;
    defaultMessageBytes?: number;
    derivation?: Partial<DerivationLimits>;
    tagsPerBuild?: number;
    tagsPerAgent?: number;
  };
  /** Upstream caches in priority order: `{ url, publicKeys, for: 'outputs' | 'derivations' | 'both' }`. */
  upstreams?: UpstreamSpec[];
  /** How long upstreams' answers are remembered (defaults 86400, 600 and 60 seconds). */
  upstreamLookups?: { hitSeconds?: number; missSeconds?: number; errorSeconds?: number };
  /** Quality assurance. */
  qa?: {
    /**
     * Fixed-output derivations re-checked on a schedule: each one whose last check is
     * older than `every` ('7d'), of builds carrying every tag of `tags` ('k=v'), at most
     * `concurrency` at once (default 1), at `priority` (default -1000000, the lowest).
     */
    fodCheck?: { every: string; tags?: string[]; concurrency?: number; priority?: number };
  };
}

const SECTIONS: Record<keyof KilnConfig, readonly string[]> = {
  scheduling: ['allocation', 'leaseSeconds', 'timeoutSeconds', 'maxSilentSeconds', 'maxLoadPerCpu', 'minFreeDiskGiB', 'submitMissingInputs'],
  retry: ['retries', 'on', 'backoffSeconds', 'byTag'],
  hooks: [],
  builtinHooks: ['publish'],
  cache: ['compressions', 'ttl', 'freshTtl', 'negativeTtl'],
  storage: ['minFreeNarGiB', 'maxOutputSize', 'maxLogSize', 'narStore', 'narRedirectSeconds', 's3'],
  retention: [],
  limits: ['messageBytes', 'defaultMessageBytes', 'derivation', 'tagsPerBuild', 'tagsPerAgent'],
  upstreams: [],
  upstreamLookups: ['hitSeconds', 'missSeconds', 'errorSeconds'],
  qa: ['fodCheck'],
};
const FOD_CHECK_SETTINGS = ['every', 'tags', 'concurrency', 'priority'];
const DERIVATION_LIMITS = Object.keys(DEFAULT_INPUT_LIMITS.derivation);
const PUBLISH_LIMITS = ['concurrency', 'maxAttempts', 'timeoutSeconds'];

export class ConfigError extends Error {}

/** Reads and checks a configuration file. */
export async function loadConfig(path: string): Promise<KilnConfig> {
  const file = resolve(path);
  let raw: unknown;
  try {
    raw = await readConfigValue(file);
  } catch (err) {
    throw new ConfigError(`${path}: ${(err as Error).message}`);
  }
  return checkConfig(raw, path);
}

async function readConfigValue(file: string): Promise<unknown> {
  const ext = extname(file);
  if (ext === '.json') return JSON.parse(readFileSync(file, 'utf8')) as unknown;
  if (ext === '.js' || ext === '.mjs') return ((await import(pathToFileURL(file).href)) as { default?: unknown }).default;
  if (ext === '.ts' || ext === '.mts') {
    // Node 20 cannot load TypeScript itself: transpile beside a temporary copy and import that.
    const ts = await import('typescript');
    const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: basename(file),
    });
    const dir = mkdtempSync(join(dirname(file), '.kiln-config-'));
    try {
      const out = join(dir, `${basename(file, ext)}.mjs`);
      writeFileSync(out, outputText);
      return ((await import(pathToFileURL(out).href)) as { default?: unknown }).default;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  throw new Error(`unknown kind of configuration file ${JSON.stringify(ext)}: use .json, .ts, .js or .mjs`);
}

/** Checks the shape of a configuration value; throws a ConfigError naming the first mistake. */
export function checkConfig(raw: unknown, where: string): KilnConfig {
  const fail = (at: string, what: string): never => {
    throw new ConfigError(`${where}: ${at}: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('the file', 'must hold (or export as default) an object');
  const config = raw as Record<string, unknown>;
  for (const key of Object.keys(config)) {
    if (!(key in SECTIONS)) fail(key, `is not a setting (known: ${Object.keys(SECTIONS).join(', ')})`);
  }
  for (const section of ['scheduling', 'retry', 'builtinHooks', 'cache', 'limits', 'upstreamLookups', 'storage', 'qa'] as const) {
    const value = config[section];
    if (value === undefined) continue;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(section, 'must be an object');
    for (const key of Object.keys(value as object)) {
      if (!SECTIONS[section].includes(key)) fail(`${section}.${key}`, `is not a setting (known: ${SECTIONS[section].join(', ')})`);
    }
  }
  const s = (config.scheduling ?? {}) as Record<string, unknown>;
  for (const key of ['leaseSeconds', 'timeoutSeconds', 'maxSilentSeconds', 'maxLoadPerCpu', 'minFreeDiskGiB'] as const) {
    if (s[key] !== undefined && (typeof s[key] !== 'number' || !(s[key] >= 0))) fail(`scheduling.${key}`, 'must be a number of at least 0');
  }
  const st = (config.storage ?? {}) as Record<string, unknown>;
  if (st.narStore !== undefined && typeof st.narStore !== 'string') fail('storage.narStore', 'must be a string (a directory or s3://BUCKET/PREFIX)');
  if (st.s3 !== undefined) {
    const c = st.s3 as Record<string, unknown>;
    if (typeof c !== 'object' || c === null || typeof c.accessKeyId !== 'string' || typeof c.secretAccessKey !== 'string') {
      fail('storage.s3', 'must be { accessKeyId, secretAccessKey } (strings; sessionToken optional)');
    }
    for (const key of Object.keys(c)) if (!['accessKeyId', 'secretAccessKey', 'sessionToken'].includes(key)) fail(`storage.s3.${key}`, 'is not a setting (known: accessKeyId, secretAccessKey, sessionToken)');
  }
  for (const key of ['minFreeNarGiB', 'narRedirectSeconds'] as const) {
    if (st[key] !== undefined && (typeof st[key] !== 'number' || !(st[key] >= 0))) fail(`storage.${key}`, 'must be a number of at least 0');
  }
  for (const key of ['maxOutputSize', 'maxLogSize'] as const) {
    const v = st[key];
    if (v === undefined) continue;
    if (typeof v === 'number' ? !Number.isSafeInteger(v) || v < 0 : typeof v !== 'string') fail(`storage.${key}`, 'must be a whole number of bytes or a size such as "2G"');
    if (typeof v === 'string') {
      try {
        parseByteSize(v, `storage.${key}`);
      } catch (err) {
        fail(`storage.${key}`, (err as Error).message.replace(`storage.${key} `, ''));
      }
    }
  }
  if (s.allocation !== undefined && typeof s.allocation !== 'string') fail('scheduling.allocation', 'must be a string');
  if (s.submitMissingInputs !== undefined && typeof s.submitMissingInputs !== 'boolean') fail('scheduling.submitMissingInputs', 'must be true or false');
  const r = (config.retry ?? {}) as Record<string, unknown>;
  for (const key of ['retries', 'backoffSeconds'] as const) {
    if (r[key] !== undefined && (!Number.isInteger(r[key]) || (r[key] as number) < 0)) fail(`retry.${key}`, 'must be a whole number of at least 0');
  }
  if (r.on !== undefined && (!Array.isArray(r.on) || r.on.some((k) => typeof k !== 'string'))) fail('retry.on', 'must be a list of failure kinds');
  if (r.byTag !== undefined) {
    if (!Array.isArray(r.byTag)) fail('retry.byTag', 'must be a list');
    (r.byTag as unknown[]).forEach((rule, i) => {
      const at = `retry.byTag[${i}]`;
      if (typeof rule !== 'object' || rule === null) fail(at, 'must be an object');
      const x = rule as Record<string, unknown>;
      if (typeof x.tag !== 'string' || !/^[^=]+=/.test(x.tag)) fail(`${at}.tag`, 'must be KEY=VALUE');
      if (!Number.isInteger(x.retries) || (x.retries as number) < 0) fail(`${at}.retries`, 'must be a whole number of at least 0');
      if (x.on !== undefined && (!Array.isArray(x.on) || x.on.some((k) => typeof k !== 'string'))) fail(`${at}.on`, 'must be a list of failure kinds');
      if (x.backoffSeconds !== undefined && (!Number.isInteger(x.backoffSeconds) || (x.backoffSeconds as number) < 0)) fail(`${at}.backoffSeconds`, 'must be a whole number of at least 0');
    });
  }
  if (config.hooks !== undefined && !Array.isArray(config.hooks)) fail('hooks', 'must be a list');
  const l = (config.limits ?? {}) as Record<string, unknown>;
  const count = (at: string, v: unknown) => {
    if (!Number.isInteger(v) || (v as number) < 1) fail(at, 'must be a whole number of at least 1');
  };
  for (const key of ['defaultMessageBytes', 'tagsPerBuild', 'tagsPerAgent'] as const) if (l[key] !== undefined) count(`limits.${key}`, l[key]);
  for (const [section, known] of [['messageBytes', undefined], ['derivation', DERIVATION_LIMITS]] as const) {
    const value = l[section];
    if (value === undefined) continue;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`limits.${section}`, 'must be an object');
    for (const [key, v] of Object.entries(value as object)) {
      if (known && !known.includes(key)) fail(`limits.${section}.${key}`, `is not a setting (known: ${known.join(', ')})`);
      count(`limits.${section}.${key}`, v);
    }
  }
  const lifetimes = (config.upstreamLookups ?? {}) as Record<string, unknown>;
  for (const key of SECTIONS.upstreamLookups) {
    if (lifetimes[key] !== undefined && (typeof lifetimes[key] !== 'number' || !((lifetimes[key] as number) > 0))) fail(`upstreamLookups.${key}`, 'must be a number of seconds above 0');
  }
  if (config.upstreams !== undefined) {
    if (!Array.isArray(config.upstreams)) fail('upstreams', 'must be a list of { url, publicKeys, for }');
    (config.upstreams as unknown[]).forEach((u, i) => {
      if (typeof u !== 'object' || u === null || Array.isArray(u)) fail(`upstreams[${i}]`, 'must be an object { url, publicKeys, for }');
      for (const key of Object.keys(u as object)) if (!['url', 'publicKeys', 'for'].includes(key)) fail(`upstreams[${i}].${key}`, 'is not a setting (known: url, publicKeys, for)');
      const x = u as Record<string, unknown>;
      if (typeof x.url !== 'string') fail(`upstreams[${i}].url`, 'must be a string');
      if (!Array.isArray(x.publicKeys) || x.publicKeys.some((k) => typeof k !== 'string')) fail(`upstreams[${i}].publicKeys`, 'must be a list of keys');
    });
    try {
      parseUpstreams(config.upstreams as UpstreamSpec[]);
    } catch (err) {
      fail('upstreams', (err as Error).message);
    }
  }
  const publish = (config.builtinHooks as Record<string, unknown> | undefined)?.publish;
  if (publish !== undefined && typeof publish !== 'boolean') {
    if (typeof publish !== 'object' || publish === null || Array.isArray(publish)) fail('builtinHooks.publish', 'must be true, false, or an object of its limits');
    for (const [key, value] of Object.entries(publish as object)) {
      if (!PUBLISH_LIMITS.includes(key)) fail(`builtinHooks.publish.${key}`, `is not a setting (known: ${PUBLISH_LIMITS.join(', ')})`);
      if (!Number.isInteger(value) || (value as number) < 1) fail(`builtinHooks.publish.${key}`, 'must be a whole number of at least 1');
    }
  }
  checkFodCheck((config.qa as Record<string, unknown> | undefined)?.fodCheck, fail);
  try {
    const compressions = (config.cache as Record<string, unknown> | undefined)?.compressions;
    if (compressions !== undefined) parseCompressions(compressions, `${where}: cache.compressions`);
    for (const key of ['ttl', 'freshTtl', 'negativeTtl']) {
      const v = (config.cache as Record<string, unknown> | undefined)?.[key];
      if (v !== undefined && !(Number.isInteger(v) && (v as number) >= 0)) fail(`cache.${key}`, 'must be a whole number of seconds, 0 or more');
    }
    parseRetention(config.retention, `${where}: retention`);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  return config as KilnConfig;
}

function checkFodCheck(value: unknown, fail: (at: string, what: string) => never): void {
  if (value === undefined) return;
  const at = 'qa.fodCheck';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(at, "must be an object { every: '7d', tags, concurrency, priority }");
  const f = value as Record<string, unknown>;
  for (const key of Object.keys(f)) if (!FOD_CHECK_SETTINGS.includes(key)) fail(`${at}.${key}`, `is not a setting (known: ${FOD_CHECK_SETTINGS.join(', ')})`);
  if (typeof f.every !== 'string' || !(parseDuration(f.every)! > 0)) fail(`${at}.every`, `must be a length of time above 0: ${DURATION_EXAMPLES}`);
  if (f.tags !== undefined && (!Array.isArray(f.tags) || f.tags.some((t) => typeof t !== 'string'))) fail(`${at}.tags`, 'must be a list of KEY=VALUE');
  try {
    validateTags(((f.tags ?? []) as string[]).map(parseTag), `${at}.tags`);
  } catch (err) {
    fail(`${at}.tags`, (err as Error).message);
  }
  if (f.concurrency !== undefined && (!Number.isInteger(f.concurrency) || (f.concurrency as number) < 1)) fail(`${at}.concurrency`, 'must be a whole number of at least 1');
  if (f.priority !== undefined) {
    try {
      validatePriority(f.priority as number);
    } catch (err) {
      fail(`${at}.priority`, (err as Error).message);
    }
  }
}

/** The schedule of fixed-output re-checks as coordinator options; the config was checked. */
export function qaOptions(config: KilnConfig): Pick<CoordinatorOptions, 'fodCheck'> {
  const f = config.qa?.fodCheck;
  if (!f) return {};
  return {
    fodCheck: {
      everyMs: parseDuration(f.every)!,
      tags: (f.tags ?? []).map(parseTag),
      concurrency: f.concurrency ?? DEFAULT_FOD_CHECK_SCHEDULE.concurrency,
      priority: f.priority ?? DEFAULT_FOD_CHECK_SCHEDULE.priority,
    },
  };
}

/** The request limits as coordinator options; the config was checked. */
export function limitOptions(config: KilnConfig): Pick<CoordinatorOptions, 'limits'> {
  return { limits: inputLimits(config.limits ?? {}) };
}

/** The cache's part (compressions, publishing, retention) as coordinator options; the config was checked. */
export function cacheOptions(config: KilnConfig, where: string): Pick<CoordinatorOptions, 'compressions' | 'publish' | 'retention' | 'cacheTtls'> {
  const publish = config.builtinHooks?.publish;
  const c = config.cache;
  return {
    cacheTtls: { ...(c?.ttl !== undefined ? { found: c.ttl } : {}), ...(c?.freshTtl !== undefined ? { fresh: c.freshTtl } : {}), ...(c?.negativeTtl !== undefined ? { missing: c.negativeTtl } : {}) },
    compressions: config.cache?.compressions ? parseCompressions(config.cache.compressions, `${where}: cache.compressions`) : undefined,
    publish:
      publish === false
        ? false
        : typeof publish === 'object'
          ? {
              ...(publish.concurrency !== undefined ? { concurrency: publish.concurrency } : {}),
              ...(publish.maxAttempts !== undefined ? { maxAttempts: publish.maxAttempts } : {}),
              ...(publish.timeoutSeconds !== undefined ? { timeoutMs: publish.timeoutSeconds * 1000 } : {}),
            }
          : undefined,
    retention: parseRetention(config.retention, `${where}: retention`),
  };
}

/** The upstreams' part as coordinator options; the config was checked. */
export function upstreamOptions(config: KilnConfig): Pick<CoordinatorOptions, 'upstreams' | 'upstreamLifetimes'> {
  const l = config.upstreamLookups ?? {};
  const ms = (seconds: number | undefined) => (seconds === undefined ? undefined : seconds * 1000);
  const lifetimes = { hitMs: ms(l.hitSeconds), missMs: ms(l.missSeconds), errorMs: ms(l.errorSeconds) };
  return {
    upstreams: config.upstreams ? parseUpstreams(config.upstreams) : undefined,
    upstreamLifetimes: Object.fromEntries(Object.entries(lifetimes).filter(([, v]) => v !== undefined)),
  };
}

/**
 * The scheduling and storage parts as command-line values (what `kiln coordinator` parses), so the
 * file and the flags go through one parser; flags given on the command line win.
 */
export function configAsFlags(config: KilnConfig): Record<string, string | string[] | boolean | undefined> {
  const s = config.scheduling ?? {};
  const r = config.retry ?? {};
  const st = config.storage ?? {};
  const str = (n: number | undefined) => (n === undefined ? undefined : String(n));
  return {
    allocation: s.allocation,
    lease: str(s.leaseSeconds),
    timeout: str(s.timeoutSeconds),
    'max-silent-time': str(s.maxSilentSeconds),
    'max-load-per-cpu': str(s.maxLoadPerCpu),
    'min-free-disk-gib': str(s.minFreeDiskGiB),
    'only-submitted': s.submitMissingInputs === false ? true : undefined,
    'min-free-nar-gib': str(st.minFreeNarGiB),
    'max-output-size': st.maxOutputSize === undefined ? undefined : String(st.maxOutputSize),
    'max-log-size': st.maxLogSize === undefined ? undefined : String(st.maxLogSize),
    'nar-store': st.narStore,
    'nar-redirect-seconds': str(st.narRedirectSeconds),
    retries: str(r.retries),
    'retry-on': r.on?.join(','),
    'retry-backoff': str(r.backoffSeconds),
    'retry-tag': r.byTag?.map((t) => `${t.tag}:${t.retries}${t.on || t.backoffSeconds !== undefined ? `:${(t.on ?? []).join(',')}` : ''}${t.backoffSeconds !== undefined ? `:${t.backoffSeconds}` : ''}`),
  };
}
