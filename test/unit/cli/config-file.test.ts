// The configuration file: JSON or TypeScript, checked with the place of each mistake, and
// read into the same settings as the command-line flags.
import { afterAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheOptions, checkConfig, configAsFlags, loadConfig, qaOptions } from '../../../src/coordinator/config-file.js';
import { DEFAULT_RETENTION, keptSince } from '../../../src/substitutes/retention.js';
import { schedulingOptions, storageOptions } from '../../../src/cli/commands/coordinator.js';

const dir = mkdtempSync(join(tmpdir(), 'kiln-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('kiln coordinator --config', () => {
  test('a kiln.config.ts is transpiled and read, and becomes the same policy the flags make', async () => {
    const path = file(
      'kiln.config.ts',
      `interface Retry { retries: number }
      const retry: Retry & { on: string[]; byTag: { tag: string; retries: number; backoffSeconds: number }[] } =
        { retries: 2, on: ['failure'], byTag: [{ tag: 'flaky=yes', retries: 4, backoffSeconds: 30 }] };
      export default { scheduling: { allocation: 'fair-share:owner', leaseSeconds: 90, submitMissingInputs: false }, retry,
        hooks: [{ name: 'notify', events: ['build-failure'], command: ['true'] }] };`,
    );
    const config = await loadConfig(path);
    expect(config.hooks).toEqual([{ name: 'notify', events: ['build-failure'], command: ['true'] }]);
    const opts = schedulingOptions(configAsFlags(config) as Parameters<typeof schedulingOptions>[0]);
    expect(opts.allocationPolicy!.name).toBe('fair-share:owner');
    expect(opts.leaseMs).toBe(90_000);
    expect(opts.submitMissingInputs).toBe(false);
    expect(opts.retryPolicy!.farm).toMatchObject({ maxAttempts: 3, on: ['failure'] });
    expect(opts.retryPolicy!.byTag).toEqual([
      { tag: { key: 'flaky', value: 'yes' }, rule: { maxAttempts: 5, on: ['failure'], initialBackoffMs: 30_000, maxBackoffMs: 300_000 } },
    ]);
  });

  test('a JSON file is read as it is', async () => {
    const config = await loadConfig(file('kiln.json', JSON.stringify({ scheduling: { timeoutSeconds: 3600 } })));
    expect(schedulingOptions(configAsFlags(config) as Parameters<typeof schedulingOptions>[0]).defaultLimits).toEqual({ timeoutSeconds: 3600, maxSilentSeconds: 0 });
  });

  test('the storage part becomes the NAR floor in bytes, as --min-free-nar-gib does', async () => {
    const config = await loadConfig(file('storage.json', JSON.stringify({ storage: { minFreeNarGiB: 1.5 } })));
    expect(storageOptions(configAsFlags(config))).toEqual({ minFreeNarBytes: 1.5 * 2 ** 30 });
    expect(storageOptions({})).toEqual({ minFreeNarBytes: 0 });
  });

  test('storage.narStore and narRedirectSeconds become the NAR store, as --nar-store and --nar-redirect-seconds do', async () => {
    const storage = { narStore: 's3://kiln-nars/farm?endpoint=http://127.0.0.1:7480', narRedirectSeconds: 600, s3: { accessKeyId: 'AK', secretAccessKey: 'SK' } };
    const config = await loadConfig(file('s3.json', JSON.stringify({ storage })));
    expect(config.storage?.s3).toEqual({ accessKeyId: 'AK', secretAccessKey: 'SK' });
    expect(storageOptions(configAsFlags(config))).toMatchObject({
      narStore: { kind: 's3', bucket: 'kiln-nars', prefix: 'farm/', endpoint: 'http://127.0.0.1:7480', pathStyle: true },
      narRedirectSeconds: 600,
    });
    expect(() => storageOptions({ 'nar-store': 'ftp://x/y' })).toThrow(/--nar-store ftp:\/\/x\/y: unknown scheme/);
    expect(() => storageOptions({ 'nar-store': '/srv/nars', 'nar-redirect-seconds': '60' })).toThrow(/--nar-redirect-seconds is for an s3:\/\/ --nar-store/);
  });

  test.each([
    ['{"schedule": {}}', /schedule: is not a setting \(known: scheduling, retry, hooks, builtinHooks, cache, storage, retention, limits, upstreams, upstreamLookups, qa\)/],
    ['{"storage": {"minFreeNarGiB": -1}}', /storage.minFreeNarGiB: must be a number of at least 0/],
    ['{"storage": {"s3": {"accessKeyId": "AK"}}}', /storage.s3: must be \{ accessKeyId, secretAccessKey \}/],
    ['{"storage": {"narStore": 5}}', /storage.narStore: must be a string/],
    ['{"cache": {"compressions": ["lz4", "brotli"]}}', /: cache.compressions\[1\]: "brotli" is not a compression the cache can keep \(lz4, zstd, gzip/],
    ['{"cache": {"compressions": ["lz4", "zstd:25"]}}', /: cache.compressions\[1\]: zstd levels go from 1 to 19, not 25/],
    ['{"cache": {"compressions": ["zstd"]}}', /: cache.compressions: must include lz4: agents upload NARs as lz4/],
    ['{"cache": {"compressions": ["lz4", "gzip", "gzip:9"]}}', /: cache.compressions: gzip is listed twice/],
    ['{"cache": {"compression": ["lz4"]}}', /cache.compression: is not a setting \(known: compressions, ttl, freshTtl, negativeTtl\)/],
    ['{"retention": {"lastSuccessful": 3}}', /: retention.lastSuccessful: is not a setting \(known: lastSuccessfulPerName, newerThanDays, newerThan, tags\)/],
    ['{"retention": {"lastSuccessfulPerName": -1}}', /: retention.lastSuccessfulPerName: must be a whole number of at least 0, not -1/],
    ['{"retention": {"newerThan": "last tuesday"}}', /: retention.newerThan: must be an ISO 8601 date \(2025-01-31\)/],
    ['{"retention": {"newerThanDays": "30"}}', /: retention.newerThanDays: must be a number of days/],
    ['{"retention": {"tags": ["keep"]}}', /: retention.tags\[0\]: tag "keep" is not of the form key=value/],
    ['{"builtinHooks": {"publish": {"concurrency": 0}}}', /builtinHooks.publish.concurrency: must be a whole number of at least 1/],
    ['{"builtinHooks": {"retry": false}}', /builtinHooks.retry: is not a setting \(known: publish\)/],
    ['{"scheduling": {"lease": 5}}', /scheduling.lease: is not a setting/],
    ['{"scheduling": {"leaseSeconds": "soon"}}', /scheduling.leaseSeconds: must be a number/],
    ['{"retry": {"byTag": [{"tag": "flaky", "retries": 1}]}}', /retry.byTag\[0\].tag: must be KEY=VALUE/],
    ['{"hooks": {}}', /hooks: must be a list/],
    ['[1, 2]', /the file: must hold \(or export as default\) an object/],
    ['{ not json', /Expected property name|JSON/],
  ])('refuses %s naming the place', async (text, message) => {
    await expect(loadConfig(file(`bad-${Math.random().toString(36).slice(2)}.json`, text))).rejects.toThrow(message);
  });

  test('the cache part becomes the coordinator options: compressions with their levels, narinfo TTLs, the publish hook, retention', async () => {
    const path = file(
      'cache.json',
      JSON.stringify({
        cache: { compressions: ['lz4', 'zstd:19'], ttl: 600, negativeTtl: 30 },
        builtinHooks: { publish: { concurrency: 4, timeoutSeconds: 7200 } },
        retention: { lastSuccessfulPerName: 5, newerThanDays: 30, newerThan: '2025-01-31', tags: ['keep=true', 'release=yes'] },
      }),
    );
    expect(cacheOptions(await loadConfig(path), path)).toEqual({
      cacheTtls: { found: 600, missing: 30 },
      compressions: [{ name: 'lz4' }, { name: 'zstd', level: 19 }],
      publish: { concurrency: 4, timeoutMs: 7_200_000 },
      retention: {
        lastSuccessfulPerName: 5,
        newerThanDays: 30,
        newerThan: new Date('2025-01-31T00:00:00Z'),
        tags: [{ key: 'keep', value: 'true' }, { key: 'release', value: 'yes' }],
      },
    });
    const off = file('off.json', JSON.stringify({ builtinHooks: { publish: false } }));
    expect(cacheOptions(await loadConfig(off), off)).toEqual({ cacheTtls: {}, compressions: undefined, publish: false, retention: DEFAULT_RETENTION });
  });

  test('the date rules keep from the earlier of their two times', () => {
    const now = new Date('2025-03-01T00:00:00Z');
    expect(keptSince({ ...DEFAULT_RETENTION, newerThanDays: 10 }, now)).toEqual(new Date('2025-02-19T00:00:00Z'));
    expect(keptSince({ ...DEFAULT_RETENTION, newerThanDays: 10, newerThan: new Date('2025-01-01') }, now)).toEqual(new Date('2025-01-01T00:00:00Z'));
    expect(keptSince(DEFAULT_RETENTION, now)).toBeUndefined();
  });

  test('an unknown kind of file is refused', async () => {
    await expect(loadConfig(file('kiln.yaml', 'a: 1'))).rejects.toThrow(/use .json, .ts, .js or .mjs/);
  });

  test('qa.fodCheck becomes the schedule of fixed-output re-checks, the lowest priority and one at a time by default', () => {
    const config = checkConfig({ qa: { fodCheck: { every: '7d', tags: ['team=web'] } } }, 'kiln.json');
    expect(qaOptions(config)).toEqual({ fodCheck: { everyMs: 7 * 86_400_000, tags: [{ key: 'team', value: 'web' }], concurrency: 1, priority: -1_000_000 } });
    expect(qaOptions(checkConfig({ qa: { fodCheck: { every: '12h', concurrency: 3, priority: -50 } } }, 'k')).fodCheck).toMatchObject({ everyMs: 43_200_000, concurrency: 3, priority: -50 });
    expect(qaOptions(checkConfig({}, 'k'))).toEqual({});
  });

  test('a mistake in qa.fodCheck is named with its place', () => {
    const mistake = (fodCheck: unknown) => () => checkConfig({ qa: { fodCheck } }, 'kiln.json');
    expect(mistake({ every: 'weekly' })).toThrow("kiln.json: qa.fodCheck.every: must be a length of time above 0: 30s, 30m, 12h, 7d or 2w");
    expect(mistake({ every: '0d' })).toThrow('qa.fodCheck.every: must be a length of time above 0');
    expect(mistake({ every: '7d', tags: ['nokey'] })).toThrow('qa.fodCheck.tags: tag "nokey" is not of the form key=value');
    expect(mistake({ every: '7d', concurrency: 0 })).toThrow('qa.fodCheck.concurrency: must be a whole number of at least 1');
    expect(mistake({ every: '7d', priority: -2_000_000 })).toThrow('qa.fodCheck.priority: priority -2000000 is outside');
    expect(mistake({ every: '7d', often: true })).toThrow('qa.fodCheck.often: is not a setting (known: every, tags, concurrency, priority)');
    expect(() => checkConfig({ qa: { fodChecks: {} } }, 'k')).toThrow('qa.fodChecks: is not a setting (known: fodCheck)');
  });
});
