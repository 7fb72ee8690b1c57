// The built-in publish hook through the real coordinator on both databases: each output
// of a successful build gets the cache's other compressions and a signed narinfo made
// once; real Nix substitutes from it with signatures required, and Guile checks it the
// way `guix substitute` does (signature, the NAR it prefers, decompressed with
// guile-zstd or guile-zlib, hash compared).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { narFiles, storePaths } from '../../src/db/schema.js';
import { NarStorage } from '../../src/storage/nar-storage.js';
import { encodeBase32 } from '../../src/store/base32.js';
import { parseNarInfo } from '../../src/store/narinfo.js';
import { countValidSignatures, parseNixPublicKey } from '../../src/store/nix-signature.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { loadCacheKeys } from '../../src/substitutes/cache-keys.js';
import { parseCompressions } from '../../src/substitutes/compressions.js';
import { publishPath, type PublishDeps } from '../../src/substitutes/publish.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { substituteFromCache } from '../helpers/build-loop.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { buildByHand, DerivationMaker } from '../helpers/hand-builds.js';

const run = promisify(execFile);
const GUIX_SCRIPT = resolve('test/fixtures/guix/guix-sig.scm');
const COMPRESSIONS = parseCompressions(['lz4', 'zstd:9', 'gzip'], 'test');

/** Guile, as `guix substitute` would, fetching `path` from the cache; its verdict. */
async function guixSubstitute(t: TestCoordinator, pubFile: string, path: string, only: string[]): Promise<{ ok: boolean; said: string }> {
  try {
    const { stdout } = await run('guile', ['-s', GUIX_SCRIPT, 'substitute', t.coordinator.url, parseStorePath(path).hashPart, pubFile, ...only], {
      env: { ...process.env, GUILE_AUTO_COMPILE: '0' },
    });
    return { ok: true, said: stdout.trim() };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, said: `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() };
  }
}

describe.each(DATABASE_KINDS)('the publish hook on %s', (kind) => {
  let t: TestCoordinator;
  let agent: TestAgentStream;
  let dir: string;
  let guixPub: string;
  const maker = new DerivationMaker();
  const nonce = randomUUID().slice(0, 8);
  const lib = maker.make({ name: `lib-${nonce}` });
  const app = maker.make({ name: `app-${nonce}`, outputs: ['out', 'dev'], inputDrvs: new Map([[lib.path, ['out']]]) });
  const paths = [lib.outputs.get('out')!, app.outputs.get('out')!, app.outputs.get('dev')!];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-publish-'));
    t = await startTestCoordinator(kind, { submitMissingInputs: false, hookPollMs: 100, compressions: COMPRESSIONS });
    agent = await connectTestAgent(t);
    guixPub = join(dir, 'signing-key.pub');
    writeFileSync(guixPub, Buffer.from(await (await fetch(`${t.coordinator.url}/signing-key.pub`)).arrayBuffer()));
    await buildByHand(t, agent, maker, lib);
    await buildByHand(t, agent, maker, app, { references: (o) => (o === 'out' ? [lib.outputs.get('out')!] : []) });
  });
  afterAll(async () => {
    await agent?.close();
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const narinfoOf = async (path: string) => {
    const res = await fetch(`${t.coordinator.url}/${parseStorePath(path).hashPart}.narinfo`);
    expect(res.status).toBe(200);
    return res.text();
  };

  test('every output gets its gzip and zstd NARs, listed before the LZ4 one that Nix reads, each as its block says', async () => {
    for (const path of paths) {
      const text = await narinfoOf(path);
      const info = parseNarInfo(text);
      expect(info.files.map((f) => f.compression)).toEqual(['gzip', 'zstd', 'lz4']);
      expect(info.files.map((f) => f.url.slice(f.url.lastIndexOf('.')))).toEqual(['.gz', '.zst', '.lz4']);
      for (const f of info.files) {
        const res = await fetch(`${t.coordinator.url}/${f.url}`);
        const body = Buffer.from(await res.arrayBuffer());
        expect([res.status, body.length]).toEqual([200, f.fileSize]);
        expect(`sha256:${encodeBase32(createHash('sha256').update(body).digest())}`).toBe(f.fileHash);
      }
      // Served as the hook stored it, signed by the cache's keys.
      const [row] = await t.coordinator.database.db.select().from(storePaths).where(eq(storePaths.path, path));
      expect(row!.narinfo).toBe(text);
      expect(countValidSignatures(info, [parseNixPublicKey(t.coordinator.nixPublicKey)])).toBe(1);
    }
  });

  test('Guile, as guix substitute does, accepts the signature and the zstd and gzip NARs, decompressed with guile-zstd and guile-zlib', async () => {
    for (const path of paths) {
      for (const compression of ['zstd', 'gzip']) {
        const verdict = await guixSubstitute(t, guixPub, path, [compression]);
        expect(verdict).toEqual({ ok: true, said: expect.stringMatching(new RegExp(`^${compression} nar/[0-9a-z]{52}\\.nar\\.`)) });
      }
      // A Guix with every module picks the smallest; LZ4, which it cannot read, never.
      expect((await guixSubstitute(t, guixPub, path, [])).said).toMatch(/^(zstd|gzip) /);
    }
  });

  test('an empty Nix store substitutes the outputs and their references from the published narinfos, with signatures required', async () => {
    await substituteFromCache(t, join(dir, 'client'), paths);
  }, 120_000);

  test('a stored narinfo signed by keys no longer in use is not served: the narinfo is made again on request', async () => {
    const path = lib.outputs.get('out')!;
    const published = await narinfoOf(path);
    await t.coordinator.database.db.update(storePaths).set({ narinfo: 'StorePath: /nix/store/stale', narinfoSigner: 'old-keys' }).where(eq(storePaths.path, path));
    const text = await narinfoOf(path);
    expect(text).toBe(published);
    expect((await guixSubstitute(t, guixPub, path, ['zstd'])).ok).toBe(true);
  });

  test('publishing again makes nothing new, remakes what is missing under the same name, and skips a path gone from the cache', async () => {
    const deps: PublishDeps = {
      db: t.coordinator.database.db,
      storage: await NarStorage.open(join(t.dataDir, 'nars')),
      keys: loadCacheKeys({ dataDir: t.dataDir }),
      compressions: COMPRESSIONS,
    };
    const signal = new AbortController().signal;
    const path = app.outputs.get('out')!;
    const before = await t.coordinator.database.db.select().from(narFiles).where(eq(narFiles.path, path));
    expect(await publishPath(deps, path, { signal })).toBe('current');
    await t.coordinator.database.db.delete(narFiles).where(eq(narFiles.path, path));
    await deps.storage.remove(before.find((f) => f.compression === 'zstd')!.fileName);
    expect(await publishPath(deps, path, { signal })).toBe('published');
    const after = await t.coordinator.database.db.select().from(narFiles).where(eq(narFiles.path, path));
    expect(after.map((f) => [f.compression, f.fileName]).sort()).toEqual(before.map((f) => [f.compression, f.fileName]).sort());
    expect(await deps.storage.size(after.find((f) => f.compression === 'zstd')!.fileName)).toBe(after.find((f) => f.compression === 'zstd')!.fileSize);
    expect(await publishPath(deps, `/nix/store/${'1'.repeat(32)}-nowhere`, { signal })).toBe('gone');
  });

  test('the built-in publish hook can be turned off, and only then may an operator hook take its name', async () => {
    await expect(startTestCoordinator(kind, { hooks: [{ name: 'publish', events: ['build-success'], command: ['true'] }] })).rejects.toThrow(
      /hooks\[0\] \(publish\): publish is the name of a built-in hook; to replace it, turn it off with builtinHooks: \{ publish: false \}/,
    );
    const other = await startTestCoordinator(kind, {
      publish: false,
      compressions: COMPRESSIONS,
      hookPollMs: 100,
      hooks: [{ name: 'publish', events: ['build-success'], command: ['/bin/sh', '-c', 'cat > /dev/null'] }],
    });
    const otherAgent = await connectTestAgent(other);
    try {
      const alone = maker.make({ name: `alone-${nonce}` });
      // Waits for the delivery to the hook named publish: the operator's command.
      await buildByHand(other, otherAgent, maker, alone);
      const path = alone.outputs.get('out')!;
      const [row] = await other.coordinator.database.db.select().from(storePaths).where(eq(storePaths.path, path));
      expect(row!.narinfo).toBeNull();
      expect(await other.coordinator.database.db.select().from(narFiles).where(eq(narFiles.path, path))).toEqual([]);
      const res = await fetch(`${other.coordinator.url}/${parseStorePath(path).hashPart}.narinfo`);
      expect(parseNarInfo(await res.text()).files.map((f) => f.compression)).toEqual(['lz4']);
    } finally {
      await otherAgent.close();
      await other.stop();
    }
  });
});
