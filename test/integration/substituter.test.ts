// The local builder's substituter against a binary cache on a free port whose contents
// each test chooses: a path fetched once however many builds want it, and refusals of
// NARs and narinfos that are not what they claim, leaving nothing in the store; a cache
// out of reach waited out (or left for a mirror) for the retry budget, then given up.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compressFrame } from 'lz4-napi';
import { RetryBudgetSpent } from '../../src/agent/backoff.js';
import { CacheClient } from '../../src/agent/builders/local/cache-client.js';
import { LocalStore } from '../../src/agent/builders/local/local-store.js';
import { Substituter } from '../../src/agent/builders/local/substituter.js';
import { encodeBase32 } from '../../src/store/base32.js';
import { dumpPath } from '../../src/store/nar-writer.js';
import { renderNarInfo, type NarInfo } from '../../src/store/narinfo.js';
import { generateNixKey, renderNixPublicKey, signNarInfo } from '../../src/store/nix-signature.js';
import { freePort } from '../helpers/postgres-server.js';

const PATH = '/nix/store/0c5k9gqkqa8n0mdmyf0ys4d1lv5sfm5b-fetched';
const DEP = '/nix/store/1ff6wbfp9i2mafyqwqfzhdn5zvm2rc14-dep';
const key = generateNixKey('test-cache-1');

describe('the substituter', () => {
  let root: string;
  let server: Server;
  let url: string;
  /** What the cache serves, by request path; and how often each was asked for. */
  let files: Map<string, Buffer>;
  let hits: Map<string, number>;
  /** Requests still to be answered 503, as a coordinator whose database is away. */
  let unavailable = 0;
  let stores = 0;

  /** A NAR of a small tree, in LZ4 frames of 100 bytes as kiln's agents send them. */
  async function publish(overrides: Partial<NarInfo> = {}, signer = key): Promise<void> {
    const tree = join(root, `tree-${files.size}`);
    mkdirSync(join(tree, 'bin'), { recursive: true });
    writeFileSync(join(tree, 'bin', 'tool'), `#!/bin/sh\necho ${DEP}\n`.repeat(20), { mode: 0o755 });
    const nar: Buffer[] = [];
    const dump = dumpPath(tree, { chunkSize: 100 });
    for await (const chunk of dump) nar.push(Buffer.from(chunk));
    const { sha256, size } = await dump.result;
    files.set('/nar/file.nar.lz4', Buffer.concat(await Promise.all(nar.map((c) => compressFrame(c)))));
    const info: NarInfo = {
      storePath: PATH,
      files: [{ url: 'nar/file.nar.lz4', compression: 'lz4' }],
      narHash: `sha256:${encodeBase32(sha256)}`,
      narSize: size,
      references: [DEP.slice('/nix/store/'.length)],
      sigs: [],
      extra: [],
      ...overrides,
    };
    files.set('/0c5k9gqkqa8n0mdmyf0ys4d1lv5sfm5b.narinfo', Buffer.from(renderNarInfo(signNarInfo(info, signer))));
  }

  function substituter(cache: { url?: string; mirrors?: () => string[]; retryForMs?: number; warnings?: object[] } = {}): { store: LocalStore; sub: Substituter } {
    const store = new LocalStore({ storeDir: '/nix/store', root: join(root, `store-${stores++}`) });
    const retry = { forMs: cache.retryForMs ?? 30_000, log: { warn: (o: object) => cache.warnings?.push(o) } };
    const client = new CacheClient({ url: cache.url ?? url, publicKeys: [renderNixPublicKey(key.publicKey)], ...(cache.mirrors ? { mirrors: cache.mirrors } : {}), retry });
    return { store, sub: new Substituter(store, client) };
  }

  /** Everything under the store's directory: nothing half-fetched may stay. */
  const storeEntries = (store: LocalStore) => readdirSync(store.diskStoreDir);

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-subst-'));
    server = createServer((req, res) => {
      hits.set(req.url!, (hits.get(req.url!) ?? 0) + 1);
      if (unavailable > 0) {
        unavailable--;
        return void res.writeHead(503).end('database out of reach');
      }
      const body = files.get(req.url!);
      res.writeHead(body ? 200 : 404).end(body ?? 'not found');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address() as { port: number };
    url = `http://127.0.0.1:${address.port}`;
  });

  beforeEach(() => {
    files = new Map();
    hits = new Map();
    unavailable = 0;
  });

  test('waits out a cache that answers 503 for a while, then fetches the path', async () => {
    await publish();
    unavailable = 3;
    const warnings: object[] = [];
    const { store, sub } = substituter({ warnings });
    await store.init();
    expect(await sub.ensure(PATH, new AbortController().signal)).toMatchObject({ path: PATH });
    expect(warnings).toHaveLength(3);
    expect(hits.get('/0c5k9gqkqa8n0mdmyf0ys4d1lv5sfm5b.narinfo')).toBe(4);
  });

  test('moves to another coordinator\'s cache when the first is out of reach', async () => {
    await publish();
    const dead = `http://127.0.0.1:${await freePort()}`;
    const warnings: object[] = [];
    const { store, sub } = substituter({ url: dead, mirrors: () => [url], warnings });
    await store.init();
    expect(await sub.ensure(PATH, new AbortController().signal)).toMatchObject({ path: PATH });
    expect(warnings).toHaveLength(1);
    expect(JSON.stringify(warnings[0])).toContain(dead);
  });

  test('gives up with RetryBudgetSpent once the budget is spent, leaving nothing in the store', async () => {
    await publish();
    unavailable = Number.MAX_SAFE_INTEGER;
    const { store, sub } = substituter({ retryForMs: 300 });
    await store.init();
    await expect(sub.ensure(PATH, new AbortController().signal)).rejects.toBeInstanceOf(RetryBudgetSpent);
    expect(storeEntries(store)).toEqual([]);
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(root, { recursive: true, force: true });
  });

  test('fetches a path once for builds that want it at the same time, and keeps it read-only and registered', async () => {
    await publish();
    const { store, sub } = substituter();
    await store.init();
    const signal = new AbortController().signal;
    const infos = await Promise.all([sub.ensure(PATH, signal), sub.ensure(PATH, signal), sub.ensure(PATH, signal)]);
    expect(hits.get('/nar/file.nar.lz4')).toBe(1);
    expect(hits.get('/0c5k9gqkqa8n0mdmyf0ys4d1lv5sfm5b.narinfo')).toBe(1);
    expect(infos[1]).toEqual(infos[0]);
    expect(infos[0]).toMatchObject({ path: PATH, references: [DEP] });
    expect(await store.query(PATH)).toEqual(infos[0]);
    const tool = statSync(join(store.diskPath(PATH), 'bin', 'tool'));
    expect([tool.mode & 0o777, tool.mtimeMs]).toEqual([0o555, 1000]);
    expect(storeEntries(store)).toEqual([PATH.slice('/nix/store/'.length)]);
    // Valid now: asking again costs no request.
    await sub.ensure(PATH, signal);
    expect(hits.get('/nar/file.nar.lz4')).toBe(1);
  });

  test('says the cache lacks a path it does not have', async () => {
    const { store, sub } = substituter();
    await store.init();
    expect(await sub.ensure(PATH, new AbortController().signal)).toBeUndefined();
  });

  test.each([
    ['a NAR whose hash is not the declared one', { narHash: `sha256:${'0'.repeat(52)}` }, key, /is not the one the narinfo declares/],
    ['a NAR whose size is not the declared one', { narSize: 10 }, key, /is not the one the narinfo declares/],
    ['a narinfo signed by another key', {}, generateNixKey('test-cache-1'), /no valid signature by a trusted key \(signed by test-cache-1\)/],
    ['a narinfo about another path', { storePath: DEP }, key, /describes .*-dep, not .*-fetched/],
  ])('refuses %s and keeps nothing of it', async (_what, overrides, signer, message) => {
    await publish(overrides, signer);
    const { store, sub } = substituter();
    await store.init();
    await expect(sub.ensure(PATH, new AbortController().signal)).rejects.toThrow(message);
    expect(await store.query(PATH)).toBeUndefined();
    expect(storeEntries(store)).toEqual([]);
  });
});
