// `kiln cache export DIR` through the real path, on both databases: the built CLI as a
// child process exports a real coordinator's cache (outputs built by hand and published
// in LZ4 and zstd), a real nginx serves DIR, and the machine's real Nix substitutes from
// it with signatures required. After a gc and a second export the collected paths'
// narinfos and NARs are gone while the files of the others were not rewritten; an
// unreachable coordinator changes nothing; one export at a time writes to DIR; and an export that stops half-way (a NAR that
// is not what its narinfo declares) is completed by the next run, which also removes
// what the broken run wrote for a path collected in between.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { and, eq } from 'drizzle-orm';
import { narFiles, storePaths } from '../../src/db/schema.js';
import type { MadeDerivation } from '../../src/store/make-derivation.js';
import { parseNarInfo } from '../../src/store/narinfo.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { NarStorage } from '../../src/storage/nar-storage.js';
import { parseCompressions } from '../../src/substitutes/compressions.js';
import { parseRetention } from '../../src/substitutes/retention.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { substituteFromCache } from '../helpers/build-loop.js';
import { cliEnv, REPO_ROOT, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { buildByHand, DerivationMaker } from '../helpers/hand-builds.js';
import { nix, nixEnv } from '../helpers/nix.js';
import { startNginx, type Nginx } from '../helpers/nginx.js';
import { freePort } from '../helpers/postgres-server.js';

const execFileAsync = promisify(execFile);

/** Every file under `dir` but the exporter's own bookkeeping, relative to it, sorted. */
function mirrorFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .filter((f) => !f.startsWith('.kiln-export'))
    .sort();
}

/** Which file is which inode, last written when: a rewritten file changes both. */
function identities(dir: string): Map<string, string> {
  return new Map(mirrorFiles(dir).map((f) => [f, `${statSync(join(dir, f)).ino}:${statSync(join(dir, f)).mtimeMs}`]));
}

/** The README's nginx configuration that contains `marker`, with `changes` made (each must apply). */
function readmeNginx(marker: string, changes: [string, string][]): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  let text = [...readme.matchAll(/```nginx\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes(marker));
  if (text === undefined) throw new Error(`the README has no nginx configuration with ${marker}`);
  for (const [from, to] of changes) {
    if (!text.includes(from)) throw new Error(`the README's nginx configuration with ${marker} has no ${from}`);
    text = text.replaceAll(from, to);
  }
  return text;
}

describe.each(DATABASE_KINDS)('kiln cache export on %s', (kind) => {
  let t: TestCoordinator;
  let agent: TestAgentStream;
  let root: string;
  let mirror: string;
  let nginx: Nginx;
  const maker = new DerivationMaker();
  const nonce = randomUUID().slice(0, 8);
  const lib = maker.make({ name: `lib-${nonce}` });
  const app = maker.make({ name: `app-${nonce}`, inputDrvs: new Map([[lib.path, ['out']]]) });
  const tool = [1, 2, 3].map((g) => maker.make({ name: `tool-${nonce}`, env: { generation: String(g) } }));
  const out = (d: MadeDerivation) => d.outputs.get('out')!;
  const buildIds = new Map<string, string>();

  /** Builds `d`, kept by the keep=true tag (the rules keep nothing else). */
  async function buildKept(d: MadeDerivation, references: string[] = []): Promise<void> {
    const built = await buildByHand(t, agent, maker, d, { references: () => references });
    await t.admin.updateBuildTags({ id: built.buildId, set: [{ key: 'keep', value: 'true' }], removeKeys: [] });
    buildIds.set(out(d), built.buildId);
  }

  const unkeep = (output: string) => t.admin.updateBuildTags({ id: buildIds.get(output)!, set: [], removeKeys: ['keep'] });

  /** What the coordinator serves, as files of its layout: each narinfo's text, and the NARs they name. */
  async function served(): Promise<{ files: string[]; narinfos: Map<string, string>; byPath: Map<string, string[]> }> {
    const narinfos = new Map<string, string>();
    const byPath = new Map<string, string[]>();
    let pageToken = '';
    do {
      const page = await t.admin.listCachePaths({ pageSize: 3, pageToken });
      for (const p of page.paths) {
        const res = await fetch(`${t.coordinator.url}/${p.hashPart}.narinfo`);
        expect(res.status).toBe(200);
        const text = await res.text();
        narinfos.set(`${p.hashPart}.narinfo`, text);
        byPath.set(p.storePath, [`${p.hashPart}.narinfo`, ...parseNarInfo(text).files.map((f) => f.url)]);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    return { files: ['nix-cache-info', ...new Set([...byPath.values()].flat())].sort(), narinfos, byPath };
  }

  async function exportTo(dir: string, env = cliEnv(t)) {
    const r = await runCli(['cache', 'export', dir, '--json'], env);
    return { ...r, summary: r.code === 0 ? (JSON.parse(r.stdout) as Record<string, number>) : undefined };
  }

  /** Asks a client with an empty store for `path` from the mirror alone; its error text when it cannot. */
  async function realiseFails(path: string): Promise<string> {
    const store = mkdtempSync(join(root, 'client-'));
    const env = {
      ...nixEnv([`substituters = ${nginx.url}`, `trusted-public-keys = ${t.coordinator.nixPublicKey}`, 'require-sigs = true']),
      XDG_CACHE_HOME: `${store}-cache`,
    };
    const err = await execFileAsync('nix-store', ['--store', store, '--realise', path], { env }).then(
      () => undefined,
      (e: { stderr: string }) => e.stderr,
    );
    if (err === undefined) throw new Error(`${path} was substituted from the mirror`);
    return err;
  }

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-export-'));
    mirror = join(root, 'mirror');
    t = await startTestCoordinator(kind, {
      submitMissingInputs: false,
      hookPollMs: 100,
      compressions: parseCompressions(['lz4', 'zstd'], 'test'),
      retention: parseRetention({ lastSuccessfulPerName: 0, tags: ['keep=true'] }, 'test'),
    });
    agent = await connectTestAgent(t);
    await buildKept(lib);
    await buildKept(app, [out(lib)]);
    await buildKept(tool[0]!);
  }, 120_000);

  afterAll(async () => {
    await nginx?.stop();
    await agent?.close();
    await t?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('writes the cache in the file:// layout, byte for byte what the coordinator serves, and real Nix substitutes from nginx serving it', async () => {
    const want = await served();
    const r = await exportTo(mirror);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(mirrorFiles(mirror)).toEqual(want.files);
    for (const [name, text] of want.narinfos) expect(readFileSync(join(mirror, name), 'utf8')).toBe(text);
    expect(readFileSync(join(mirror, 'nix-cache-info'), 'utf8')).toBe(await (await fetch(`${t.coordinator.url}/nix-cache-info`)).text());
    const nars = want.files.filter((f) => f.startsWith('nar/'));
    // Outputs in LZ4 and zstd, as their narinfos name them.
    expect(want.byPath.get(out(app))!.slice(1).map((f) => f.replace(/^.*\.nar\./, ''))).toEqual(['zst', 'lz4']);
    const bytes = want.files.reduce((n, f) => n + statSync(join(mirror, f)).size, 0);
    expect(r.summary).toEqual({ dir: mirror, written: want.narinfos.size, removed: 0, unchanged: 0, bytes, narsWritten: nars.length, narsRemoved: 0 });

    // The README's mirror, as written but for the port and the directory.
    nginx = await startNginx(({ port }) => readmeNginx('/srv/kiln-mirror', [['listen 80;', `listen 127.0.0.1:${port};`], ['/srv/kiln-mirror', mirror]]), 'nix-cache-info');
    expect((await fetch(`${nginx.url}/.kiln-export/state`)).status).toBe(404);
    const narinfo = await fetch(`${nginx.url}/${parseStorePath(out(app)).hashPart}.narinfo`);
    expect([narinfo.headers.get('content-type'), narinfo.headers.get('cache-control')]).toEqual(['text/x-nix-narinfo', 'public, max-age=3600']);
    const client = await substituteFromCache(t, join(root, 'client'), [out(app), out(tool[0]!)], nginx.url);
    expect(readFileSync(join(client, out(app)), 'utf8')).toContain(out(app));
    // From nginx alone: it served the narinfos and the NARs of the closure (lib with app).
    const log = nginx.accessLog();
    for (const p of [out(app), out(lib), out(tool[0]!)]) expect(log).toContain(`GET /${parseStorePath(p).hashPart}.narinfo HTTP/1.1" 200`);
    expect(log).toMatch(/GET \/nar\/[0-9a-z]{52}\.nar\.lz4 HTTP\/1\.1" 200/);

    // And with no server, as the README says: nix copy from the directory.
    const store = join(root, 'client-file');
    const env = nixEnv([`trusted-public-keys = ${t.coordinator.nixPublicKey}`, 'require-sigs = true'], { ...process.env, XDG_CACHE_HOME: `${store}-cache` });
    nix('nix', ['copy', '--from', `file://${mirror}`, '--to', store, out(tool[0]!)], { env });
    expect(existsSync(join(store, out(tool[0]!)))).toBe(true);
  }, 120_000);

  test('nginx in front of the coordinator, as the README configures it, caches by kiln\'s Cache-Control', async () => {
    const front = await startNginx(
      ({ port, dir }) =>
        readmeNginx('proxy_cache kiln;', [
          ['listen 80;', `listen 127.0.0.1:${port};`],
          ['/var/cache/nginx/kiln', join(dir, 'cache')],
          ['http://127.0.0.1:8745', t.coordinator.url],
        ]),
      'nix-cache-info',
    );
    try {
      const twice = async (path: string) => {
        const first = await fetch(`${front.url}${path}`);
        const body = Buffer.from(await first.arrayBuffer());
        const second = await fetch(`${front.url}${path}`);
        expect(Buffer.from(await second.arrayBuffer())).toEqual(body);
        return { status: [first.status, second.status], cache: [first.headers.get('x-cache-status'), second.headers.get('x-cache-status')], body };
      };
      const info = await twice(`/${parseStorePath(out(app)).hashPart}.narinfo`);
      expect(info).toMatchObject({ status: [200, 200], cache: ['MISS', 'HIT'] });
      expect(info.body.toString()).toBe(await (await fetch(`${t.coordinator.url}/${parseStorePath(out(app)).hashPart}.narinfo`)).text());
      const nar = parseNarInfo(info.body.toString()).files.at(-1)!.url;
      expect(await twice(`/${nar}`)).toMatchObject({ status: [200, 200], cache: ['MISS', 'HIT'] });
      // A miss is kept for the minute kiln says.
      expect(await twice(`/${'0'.repeat(32)}.narinfo`)).toMatchObject({ status: [404, 404], cache: ['MISS', 'HIT'] });
      expect(await twice('/nix-cache-info')).toMatchObject({ status: [200, 200], cache: ['HIT', 'HIT'] });
      // Nothing but the cache goes through.
      expect((await fetch(`${front.url}/metrics`)).status).toBe(404);
    } finally {
      await front.stop();
    }
  }, 60_000);

  test('a second export with nothing changed writes nothing', async () => {
    const before = identities(mirror);
    const r = await exportTo(mirror);
    expect(r.code).toBe(0);
    expect(r.summary).toMatchObject({ written: 0, removed: 0, unchanged: (await served()).narinfos.size, bytes: 0, narsWritten: 0, narsRemoved: 0 });
    expect(identities(mirror)).toEqual(before);
  }, 60_000);

  test('after a gc, the next export removes the collected paths (narinfo and every NAR) and writes only what is new', async () => {
    // What the mirror holds: the previous export wrote it.
    const old = await served();
    const before = identities(mirror);
    await unkeep(out(tool[0]!));
    await buildKept(tool[1]!);
    const gc = await t.admin.collectGarbage({ dryRun: false });
    // tool 1's output and every .drv (no unfinished build needs them).
    expect(gc.paths).toContain(out(tool[0]!));
    expect(gc.paths).toContain(tool[0]!.path);
    const now = await served();
    expect([...now.byPath.keys()].sort()).toEqual([out(app), out(lib), out(tool[1]!)].sort());

    const r = await exportTo(mirror);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const goneFiles = [...old.byPath].filter(([p]) => !now.byPath.has(p)).flatMap(([, files]) => files);
    expect(r.summary).toMatchObject({ written: 1, removed: old.byPath.size - 2, unchanged: 2, narsWritten: 2, narsRemoved: goneFiles.length - (old.byPath.size - 2) });
    expect(mirrorFiles(mirror)).toEqual(now.files);
    for (const f of goneFiles) expect(existsSync(join(mirror, f))).toBe(false);
    // What stayed is the same file, not rewritten.
    const after = identities(mirror);
    for (const f of now.files.filter((f) => before.has(f))) expect([f, after.get(f)]).toEqual([f, before.get(f)]);

    await substituteFromCache(t, join(root, 'client-2'), [out(tool[1]!)], nginx.url);
    expect(await realiseFails(out(tool[0]!))).toMatch(/don't know how to build|cannot|does not exist|not valid/i);
    expect(nginx.accessLog()).toContain(`GET /${parseStorePath(out(tool[0]!)).hashPart}.narinfo HTTP/1.1" 404`);
  }, 120_000);

  test('a narinfo that changed is written again, and the NAR it no longer names is removed', async () => {
    const path = out(app);
    const name = `${parseStorePath(path).hashPart}.narinfo`;
    const db = t.coordinator.database.db;
    const zst = (await db.select().from(narFiles).where(eq(narFiles.path, path))).find((f) => f.fileName.endsWith('.zst'))!;
    expect(zst).toBeDefined();
    // As if the zstd file were dropped: the narinfo is rendered from the files left (LZ4).
    await db.delete(narFiles).where(and(eq(narFiles.path, path), eq(narFiles.fileName, zst.fileName)));
    await db.update(storePaths).set({ narinfo: null, narinfoSigner: null }).where(eq(storePaths.path, path));
    const want = await served();
    const before = identities(mirror);

    const r = await exportTo(mirror);
    expect(r.stderr).toBe('');
    expect(r.summary).toMatchObject({ written: 1, removed: 0, unchanged: want.narinfos.size - 1, narsWritten: 0, narsRemoved: 1 });
    expect(readFileSync(join(mirror, name), 'utf8')).toBe(want.narinfos.get(name));
    expect(mirrorFiles(mirror)).toEqual(want.files);
    expect(existsSync(join(mirror, 'nar', zst.fileName))).toBe(false);
    const after = identities(mirror);
    expect(after.get(name)).not.toBe(before.get(name));
    for (const f of want.files.filter((f) => f !== name)) expect([f, after.get(f)]).toEqual([f, before.get(f)]);
  }, 60_000);

  test('exits non-zero saying so when the coordinator is out of reach, and changes nothing', async () => {
    const before = identities(mirror);
    const r = await runCli(['cache', 'export', mirror], { ...cliEnv(t), KILN_COORDINATOR: `http://127.0.0.1:${await freePort()}` });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach the coordinator/);
    expect(identities(mirror)).toEqual(before);
  }, 60_000);

  test('one export at a time: a live exporter\'s lock is refused, a dead one\'s taken over', async () => {
    const lock = join(mirror, '.kiln-export', 'lock');
    // This process is alive, and not the export.
    writeFileSync(lock, `${process.pid}\n`);
    const refused = await runCli(['cache', 'export', mirror], cliEnv(t));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`another kiln cache export (process ${process.pid}) is writing to`);
    const gone = spawnSync('true').pid;
    writeFileSync(lock, `${gone}\n`);
    const r = await exportTo(mirror);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(existsSync(lock)).toBe(false);
  }, 60_000);

  test('a listed path whose NAR is gone when fetched is left out, saying so, with nothing of it left behind', async () => {
    const listed = (await t.admin.listCachePaths({})).paths;
    const storage = await NarStorage.open(join(t.dataDir, 'nars'));
    const filesOf = async (hashPart: string) => parseNarInfo(await (await fetch(`${t.coordinator.url}/${hashPart}.narinfo`)).text()).files.map((f) => f.url.slice('nar/'.length));
    // A path in zstd and LZ4 (app's narinfo lost its zstd file above).
    let p = listed[0]!;
    for (const q of listed) if ((await filesOf(q.hashPart)).length === 2) p = q;
    const files = await filesOf(p.hashPart);
    expect(files).toHaveLength(2);
    // The last block's file (LZ4) goes away: the zstd one before it is fetched first.
    const nar = files.at(-1)!;
    renameSync(storage.filePath(nar), `${storage.filePath(nar)}.away`);
    try {
      const dir = join(root, 'third-mirror');
      const r = await exportTo(dir);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(`kiln: left out ${p.hashPart}: the coordinator answered 404 for ${t.coordinator.url}/nar/${nar}`);
      expect(r.summary).toMatchObject({ written: listed.length - 1, removed: 0 });
      expect(existsSync(join(dir, `${p.hashPart}.narinfo`))).toBe(false);
      const named = mirrorFiles(dir)
        .filter((f) => f.endsWith('.narinfo'))
        .flatMap((f) => parseNarInfo(readFileSync(join(dir, f), 'utf8')).files.map((x) => x.url));
      expect(mirrorFiles(dir).filter((f) => f.startsWith('nar/'))).toEqual([...new Set(named)].sort());
      expect(existsSync(join(dir, 'nar', files[0]!))).toBe(false);
    } finally {
      renameSync(`${storage.filePath(nar)}.away`, storage.filePath(nar));
    }
  }, 60_000);

  test('an export stopped half-way is completed by the next run, which removes what it wrote for a path collected meanwhile', async () => {
    await buildKept(tool[2]!);
    await t.admin.collectGarbage({ dryRun: false });
    const listed = (await t.admin.listCachePaths({})).paths;
    // The last path in the listing gets a NAR that is not what its narinfo says: the run
    // stops there, after writing every path before it.
    const last = listed[listed.length - 1]!;
    const storage = await NarStorage.open(join(t.dataDir, 'nars'));
    const lastNars = parseNarInfo(await (await fetch(`${t.coordinator.url}/${last.hashPart}.narinfo`)).text()).files.map((f) => f.url.slice('nar/'.length));
    const sizes = lastNars.map((n) => statSync(storage.filePath(n)).size);
    for (const n of lastNars) appendFileSync(storage.filePath(n), 'x');

    const dir = join(root, 'second-mirror');
    const broken = await exportTo(dir);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(new RegExp(`/nar/${lastNars[0]!.replace('.', '\\.')}.* has \\d+ bytes, not the \\d+ its narinfo declares`));
    expect(existsSync(join(dir, `${last.hashPart}.narinfo`))).toBe(false);
    expect(existsSync(join(dir, '.kiln-export', 'state'))).toBe(false);
    // Every path before the broken one is in place; one of them is now collected.
    const written = listed.slice(0, -1);
    for (const p of written) expect(existsSync(join(dir, `${p.hashPart}.narinfo`))).toBe(true);
    const doomed = written.find((p) => p.storePath === out(tool[1]!) || p.storePath === out(app))!;
    expect(doomed).toBeDefined();
    const doomedFiles = [`${doomed.hashPart}.narinfo`, ...parseNarInfo(readFileSync(join(dir, `${doomed.hashPart}.narinfo`), 'utf8')).files.map((f) => f.url)];
    await unkeep(doomed.storePath);
    expect((await t.admin.collectGarbage({ dryRun: false })).paths).toEqual([doomed.storePath]);
    lastNars.forEach((n, i) => truncateSync(storage.filePath(n), sizes[i]));

    const r = await exportTo(dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const want = await served();
    expect(mirrorFiles(dir)).toEqual(want.files);
    for (const f of doomedFiles) expect(existsSync(join(dir, f))).toBe(false);
    for (const [name, text] of want.narinfos) expect(readFileSync(join(dir, name), 'utf8')).toBe(text);
    expect(readdirSync(join(dir, '.kiln-export', 'tmp'))).toEqual([]);
    expect(readFileSync(join(dir, '.kiln-export', 'journal'), 'utf8')).toBe('');
  }, 120_000);
});
