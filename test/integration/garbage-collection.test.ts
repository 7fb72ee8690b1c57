// Garbage collection through the real coordinator on both databases: a cache with four
// generations of three derivation names (published in LZ4 and zstd) and an unfinished
// build; gc keeps what the retention rules, the references and the unfinished build
// need, removes the rest (narinfo and every NAR file), leaves no narinfo pointing at a
// missing NAR, and what it kept still substitutes with real Nix.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq, inArray, sql } from 'drizzle-orm';
import { BuildResult } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { uploadOutput } from '../../src/agent/uploader.js';
import { openDatabase } from '../../src/db/connection.js';
import { rowsOf } from '../../src/db/rows.js';
import { builds, narFiles, storePaths } from '../../src/db/schema.js';
import { silentLogger } from '../../src/logger.js';
import { releasePaths } from '../../src/scheduler/availability.js';
import type { MadeDerivation } from '../../src/store/make-derivation.js';
import { parseNarInfo } from '../../src/store/narinfo.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { NarStorage } from '../../src/storage/nar-storage.js';
import { holdCacheExclusive } from '../../src/db/cache-lock.js';
import { parseCompressions } from '../../src/substitutes/compressions.js';
import { ORPHAN_GRACE_MS } from '../../src/substitutes/garbage-collection.js';
import { parseRetention } from '../../src/substitutes/retention.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { substituteFromCache } from '../helpers/build-loop.js';
import { waitUntil } from '../helpers/wait.js';
import { cliEnv, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { buildByHand, DerivationMaker } from '../helpers/hand-builds.js';

const GENERATIONS = [1, 2, 3, 4] as const;
type Generation = (typeof GENERATIONS)[number];

describe.each(DATABASE_KINDS)('garbage collection on %s', (kind) => {
  let t: TestCoordinator;
  let agent: TestAgentStream;
  let storage: NarStorage;
  let dir: string;
  const maker = new DerivationMaker();
  const nonce = randomUUID().slice(0, 8);
  const gens = <T>(f: (g: Generation) => T) => Object.fromEntries(GENERATIONS.map((g) => [g, f(g)])) as Record<Generation, T>;
  // lib and tool stand alone; app g uses lib g (and app 4 refers to lib 2 as well).
  const lib = gens((g) => maker.make({ name: `lib-${nonce}`, env: { generation: String(g) } }));
  const app = gens((g) => maker.make({ name: `app-${nonce}`, env: { generation: String(g) }, inputDrvs: new Map([[lib[g].path, ['out']]]) }));
  const tool = gens((g) => maker.make({ name: `tool-${nonce}`, env: { generation: String(g) } }));
  // Never built (no agent has its system): it still needs lib 1's output and its .drv files.
  const pending = maker.make({ name: `pending-${nonce}`, system: 'riscv64-linux', inputDrvs: new Map([[lib[1].path, ['out']]]) });
  const out = (d: MadeDerivation) => d.outputs.get('out')!;

  // What the rules keep: the last two successful builds per name, tool 1 (keep=true), lib 2
  // (app 4 refers to it), lib 1 and the .drv files of the pending build.
  const kept = [out(app[3]), out(app[4]), out(lib[1]), out(lib[2]), out(lib[3]), out(lib[4]), out(tool[1]), out(tool[3]), out(tool[4]), pending.path, lib[1].path];
  const removed = [
    out(app[1]),
    out(app[2]),
    out(tool[2]),
    ...GENERATIONS.flatMap((g) => [app[g].path, tool[g].path, ...(g === 1 ? [] : [lib[g].path])]),
  ].sort();
  /** NAR URLs of every removed path, read from their narinfos before gc. */
  let removedUrls: string[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-gc-'));
    t = await startTestCoordinator(kind, {
      submitMissingInputs: false,
      hookPollMs: 100,
      compressions: parseCompressions(['lz4', 'zstd'], 'test'),
      retention: parseRetention({ lastSuccessfulPerName: 2, tags: ['keep=true'] }, 'test'),
    });
    storage = await NarStorage.open(join(t.dataDir, 'nars'));
    agent = await connectTestAgent(t);
    for (const g of GENERATIONS) {
      await buildByHand(t, agent, maker, lib[g]);
      await buildByHand(t, agent, maker, app[g], { references: () => [out(lib[g]), ...(g === 4 ? [out(lib[2])] : [])] });
      const built = await buildByHand(t, agent, maker, tool[g]);
      // Tagged once built, as an operator does (a build's tags are also what its agent must carry).
      if (g === 1) await t.admin.updateBuildTags({ id: built.buildId, set: [{ key: 'keep', value: 'true' }], removeKeys: [] });
    }
    await t.admin.submitBuild({ derivationPath: pending.path, derivations: maker.closure(pending) });
    removedUrls = [];
    for (const path of removed) {
      const info = parseNarInfo(await (await fetch(narinfoUrl(path))).text());
      removedUrls.push(...info.files.map((f) => `${t.coordinator.url}/${f.url}`));
    }
  }, 240_000);
  afterAll(async () => {
    await agent?.close();
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const narinfoUrl = (path: string) => `${t.coordinator.url}/${parseStorePath(path).hashPart}.narinfo`;
  const status = async (url: string) => (await fetch(url, { method: 'HEAD' })).status;

  /** Every row's NAR file, in every compression, and the bytes the given paths' files hold. */
  async function cacheState(paths: string[] = []) {
    const db = t.coordinator.database.db;
    const rows = await db.select().from(storePaths);
    const others = await db.select().from(narFiles);
    const files: string[] = [];
    for await (const f of storage.files()) files.push(f.fileName);
    const bytes = [...rows, ...others].filter((r) => paths.includes(r.path)).reduce((n, r) => n + r.fileSize, 0);
    return { paths: rows.map((r) => r.path).sort(), named: [...rows, ...others].map((r) => r.fileName).sort(), files: files.sort(), bytes };
  }

  test('a dry run says what gc would remove and the space, and removes nothing', async () => {
    const before = await cacheState(removed);
    const dry = await t.admin.collectGarbage({ dryRun: true });
    expect(dry.paths).toEqual(removed);
    expect(Number(dry.bytes)).toBe(before.bytes);
    // The removed outputs' LZ4 and zstd files, and the .drv files' LZ4 ones.
    expect(Number(dry.files)).toBe(3 * 2 + (removed.length - 3));
    expect(await cacheState(removed)).toEqual(before);
    for (const path of removed) expect(await status(narinfoUrl(path))).toBe(200);
  });

  test('kiln cache public-key prints the Nix key the narinfos are signed with, and with --guix the Guix key file served at /signing-key.pub', async () => {
    const nix = await runCli(['cache', 'public-key'], cliEnv(t));
    expect({ code: nix.code, stderr: nix.stderr }).toEqual({ code: 0, stderr: '' });
    expect(nix.stdout).toBe(`${t.coordinator.nixPublicKey}\n`);
    const guix = await runCli(['cache', 'public-key', '--guix'], cliEnv(t));
    expect(guix.code).toBe(0);
    expect(guix.stdout).toBe(await (await fetch(`${t.coordinator.url}/signing-key.pub`)).text());
    expect(guix.stdout).toContain('(public-key');
    const nowhere = await runCli(['cache', 'public-key', '--coordinator', 'http://127.0.0.1:1'], cliEnv(t));
    expect(nowhere.code).not.toBe(0);
    expect(nowhere.stderr).toContain('cannot reach the coordinator at http://127.0.0.1:1');
  });

  test('gc removes every path no rule keeps with all its NAR files, keeps the rest, and no narinfo points at a missing NAR', async () => {
    const before = await cacheState(removed);
    const cli = await runCli(['cache', 'gc', '--json'], cliEnv(t));
    expect(cli.stderr).toBe('');
    const report = JSON.parse(cli.stdout) as { paths: string[]; files: number; orphanFiles: number; bytes: number };
    expect(report).toEqual({ dryRun: false, paths: removed, files: 3 * 2 + (removed.length - 3), orphanFiles: 0, bytes: before.bytes });

    for (const path of removed) expect([path, await status(narinfoUrl(path))]).toEqual([path, 404]);
    for (const url of removedUrls) expect([url, await status(url)]).toEqual([url, 404]);
    for (const path of kept) expect([path, await status(narinfoUrl(path))]).toEqual([path, 200]);

    // Every file a row names is there, and nothing else is.
    const after = await cacheState();
    expect(after.files).toEqual([...new Set(after.named)].sort());
    for (const path of after.paths) {
      for (const f of parseNarInfo(await (await fetch(narinfoUrl(path))).text()).files) expect([f.url, await status(`${t.coordinator.url}/${f.url}`)]).toEqual([f.url, 200]);
    }
    // Collecting again finds nothing more.
    expect((await t.admin.collectGarbage({ dryRun: false })).paths).toEqual([]);
  });

  test('what the rules kept still substitutes into an empty Nix store, references and all, with signatures required', async () => {
    await substituteFromCache(t, join(dir, 'client'), kept.filter((p) => !p.endsWith('.drv')));
  }, 120_000);

  test('a NAR file no row names is removed once older than the grace period; a fresh one is left for its writer', async () => {
    const old = { name: `${'0'.repeat(52)}.nar.zst`, bytes: Buffer.from('left by a crash between rows and files') };
    const fresh = { name: `${'1'.repeat(52)}.nar.lz4`, bytes: Buffer.from('a writer about to record it') };
    await storage.put(old.name, old.bytes);
    await storage.put(fresh.name, fresh.bytes);
    const longAgo = (Date.now() - ORPHAN_GRACE_MS - 60_000) / 1000;
    utimesSync(storage.filePath(old.name), longAgo, longAgo);
    const dry = await t.admin.collectGarbage({ dryRun: true });
    expect([dry.paths, Number(dry.orphanFiles), Number(dry.bytes)]).toEqual([[], 1, old.bytes.length]);
    const real = await t.admin.collectGarbage({ dryRun: false });
    expect([real.paths, Number(real.files), Number(real.orphanFiles)]).toEqual([[], 1, 1]);
    expect([await storage.size(old.name), await storage.size(fresh.name)]).toEqual([undefined, fresh.bytes.length]);
    await storage.remove(fresh.name);
  });

  test('a path gone from the cache releases no build waiting on it', async () => {
    const waiter = maker.make({ name: `waiter-${nonce}`, system: 'riscv64-linux', inputDrvs: new Map([[tool[2].path, ['out']]]) });
    const { build } = await t.admin.submitBuild({ derivationPath: waiter.path, derivations: maker.closure(waiter) });
    expect(build!.waitingInputs).toBe(1);
    // As an upload's release would run right after gc took the path away again.
    expect(await releasePaths(t.coordinator.database.db, [out(tool[2])])).toEqual([]);
    const [row] = await t.coordinator.database.db.select({ waiting: builds.waiting }).from(builds).where(eq(builds.id, build!.id));
    expect(row!.waiting).toBe(1);
    await t.admin.cancelBuild({ id: build!.id });
  });

  test('a derivation submitted again after gc took its .drv is served again, and builds', async () => {
    expect(await status(narinfoUrl(app[1].path))).toBe(404);
    await buildByHand(t, agent, maker, app[1], { references: () => [out(lib[1])] });
    expect(await status(narinfoUrl(app[1].path))).toBe(200);
    await substituteFromCache(t, join(dir, 'again'), [out(app[1])]);
  }, 120_000);

  test('ignore_if_output_exists counts a succeeded build only while its outputs are in the cache', async () => {
    // tool 2 succeeded and gc took its output: submitting it again makes a new build.
    const again = await t.admin.submitBuild({ derivationPath: tool[2].path, derivations: maker.closure(tool[2]), ignoreIfOutputExists: true });
    expect(again.existing).toBe(false);
    // tool 3's output is kept: its build stands.
    const kept = await t.admin.submitBuild({ derivationPath: tool[3].path, derivations: maker.closure(tool[3]), ignoreIfOutputExists: true });
    expect(kept.existing).toBe(true);
    expect(kept.build!.state).toBe(BuildState.SUCCEEDED);
    // The new build is a real one: the agent is given it.
    expect((await agent.nextAssignment()).buildId).toBe(again.build!.id);
    await t.admin.cancelBuild({ id: again.build!.id });
  });

  // PostgreSQL only: PGlite runs every statement on one connection, so there is no second
  // transaction to hold the lock while an upload runs (and nothing to serialise).
  if (kind === 'postgres') test('an upload that finishes while gc holds the cache waits for it, and is then served whole', async () => {
    const d = maker.make({ name: `during-gc-${nonce}` });
    const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: maker.closure(d) });
    const assign = await agent.nextAssignment();
    expect(assign.buildId).toBe(build!.id);
    const holder = await openDatabase(t.database.options);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let held!: () => void;
    const holding = new Promise<void>((r) => (held = r));
    const gc = holder.db.transaction(async (tx) => {
      await holdCacheExclusive(tx);
      held();
      await released;
    });
    try {
      await holding;
      const file = join(dir, 'during-gc');
      writeFileSync(file, 'uploaded while gc runs\n');
      const client = agentClient(t.coordinator.url, agent.agentId, agent.password);
      const upload = uploadOutput({ client, signal: new AbortController().signal, log: silentLogger() }, build!.id, { name: 'out', storePath: out(d), diskPath: file, references: [] });
      // The upload has staged everything and waits for the lock before its file goes into place.
      await waitUntil(
        async () => {
          const rows = rowsOf<{ n: number }>(await holder.db.execute(sql`select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted`));
          return Number(rows[0]!.n) > 0;
        },
        20_000,
        () => 'the upload does not wait for the cache lock',
        10,
      );
      expect(await status(narinfoUrl(out(d)))).toBe(404);
      release();
      await gc;
      const output = await upload;
      // Stored, and served once the build's success is taken.
      expect(await status(narinfoUrl(out(d)))).toBe(404);
      agent.send({ case: 'buildFinished', value: { buildId: build!.id, result: BuildResult.SUCCESS, outputs: [output], message: '' } });
      await waitUntil(async () => (await status(narinfoUrl(out(d)))) === 200, 20_000, () => `${out(d)} is not served`, 10);
      const [row] = await t.coordinator.database.db.select().from(storePaths).where(inArray(storePaths.path, [out(d)]));
      expect(await storage.size(row!.fileName)).toBe(row!.fileSize);
    } finally {
      release();
      await gc.catch(() => undefined);
      await holder.close();
      await t.admin.cancelBuild({ id: build!.id }).catch(() => undefined);
    }
  });
});
