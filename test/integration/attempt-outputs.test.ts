// An attempt's outputs commit together, through the real server: what an attempt uploads
// is served only once its success is accepted. The case from the field: an agent killed
// between two output uploads of a multi-output derivation that is not bit-for-bit
// reproducible; the next attempt uploads other bytes for the first output, and succeeds.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { BuildResult, type AssignBuild } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { uploadOutput } from '../../src/agent/uploader.js';
import { rowsOf } from '../../src/db/rows.js';
import { compressLz4Frame } from '../../src/store/lz4-frames.js';
import { dumpPath } from '../../src/store/nar-writer.js';
import { ORPHAN_GRACE_MS } from '../../src/substitutes/garbage-collection.js';
import { silentLogger } from '../../src/logger.js';
import { Hash } from '../../src/store/hash.js';
import { parseNarInfo } from '../../src/store/narinfo.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { DerivationMaker } from '../helpers/hand-builds.js';
import { waitUntil, waitForBuilds } from '../helpers/wait.js';

describe.each(DATABASE_KINDS)('attempt outputs on %s', (kind) => {
  let t: TestCoordinator;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-attempts-'));
    // A lost agent's build comes back at once, to another agent.
    t = await startTestCoordinator(kind, {
      leaseMs: 300,
      dispatchIntervalMs: 100,
      retryPolicy: { farm: { maxAttempts: 3, on: ['agent-lost'], initialBackoffMs: 0, maxBackoffMs: 0 }, byTag: [] },
    });
  });
  afterAll(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Uploads the named output of the assigned build with `content` as its bytes. */
  async function upload(agent: TestAgentStream, assign: AssignBuild, name: string, content: string) {
    const output = assign.outputs.find((o) => o.name === name)!;
    const diskPath = join(dir, `${assign.buildId}-${assign.attempt}-${name}`);
    writeFileSync(diskPath, content);
    const client = agentClient(t.coordinator.url, agent.agentId, agent.password);
    return uploadOutput({ client, signal: new AbortController().signal, log: silentLogger() }, assign.buildId, { name, storePath: output.path, diskPath, references: [] });
  }

  const narDir = () => join(t.dataDir, 'nars', 'nar');
  const stagingDir = () => join(t.dataDir, 'nars', 'staging');
  const narinfo = async (path: string) => {
    const res = await fetch(`${t.coordinator.url}/${parseStorePath(path).hashPart}.narinfo`);
    return res.status === 200 ? parseNarInfo(await res.text()) : res.status;
  };
  const storedRows = async (paths: string[]) =>
    rowsOf<{ path: string }>(await t.coordinator.database.db.execute(sql`select path from store_paths where path = any(${sql.param(paths)}::text[])`));

  test("attempt 1 uploads out and its agent dies; attempt 2's other out and dev are what is served", async () => {
    const tag = { key: 'case', value: `attempts-${randomUUID().slice(0, 8)}` };
    const maker = new DerivationMaker();
    const d = maker.make({ name: `multi-${randomUUID().slice(0, 8)}`, outputs: ['out', 'dev'] });
    const out = d.outputs.get('out')!;
    const dev = d.outputs.get('dev')!;
    const first = await connectTestAgent(t, { tags: [tag] });
    const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: maker.closure(d), tags: [tag] });
    const attempt1 = await first.nextAssignment();
    expect(attempt1.attempt).toBe(1);
    first.send({ case: 'buildStarted', value: { buildId: build!.id } });
    const before = new Set(readdirSync(narDir()));
    await upload(first, attempt1, 'out', 'attempt 1 bytes\n');
    const attempt1Files = readdirSync(narDir()).filter((f) => !before.has(f));
    expect(attempt1Files).toHaveLength(1);
    // Uploaded, not served: no narinfo, no row that readiness or the cache sees.
    expect(await narinfo(out)).toBe(404);
    expect(await storedRows([out, dev])).toEqual([]);
    // Killed part way through dev: two frames of it staged, then nothing.
    const cut = new AbortController();
    const devPath = join(dir, 'dev-1');
    writeFileSync(devPath, 'x'.repeat(4096));
    const devChunks: Buffer[] = [];
    for await (const c of dumpPath(devPath, { chunkSize: 1024 })) devChunks.push(Buffer.from(c));
    async function* partial() {
      yield { message: { case: 'header' as const, value: { buildId: build!.id, outputName: 'dev', storePath: dev, offset: 0n, references: [] } } };
      for (const c of devChunks.slice(0, 2)) yield { message: { case: 'chunk' as const, value: await compressLz4Frame(c) } };
      await new Promise((resolve) => cut.signal.addEventListener('abort', resolve, { once: true }));
    }
    const client1 = agentClient(t.coordinator.url, first.agentId, first.password);
    const partialUpload = client1.uploadOutput(partial(), { signal: cut.signal }).catch(() => undefined);
    await waitUntil(() => readdirSync(stagingDir()).some((f) => f.startsWith(`${build!.id}.1.dev`)), 10_000, () => 'dev to be staged');
    cut.abort();
    await partialUpload;
    await first.close();

    const second = await connectTestAgent(t, { tags: [tag] });
    try {
      const attempt2 = await second.nextAssignment();
      expect([attempt2.buildId, attempt2.attempt]).toEqual([build!.id, 2]);
      const outputs = [await upload(second, attempt2, 'out', 'attempt 2 bytes, not the same\n'), await upload(second, attempt2, 'dev', 'dev of attempt 2\n')];
      second.send({ case: 'buildFinished', value: { buildId: build!.id, result: BuildResult.SUCCESS, outputs, message: '' } });
      const state = async () => (await t.admin.getBuild({ id: build!.id })).build!;
      await waitForBuilds(t.coordinator, async () => (await state()).state === BuildState.SUCCEEDED, 20_000, async () => `build is ${BuildState[(await state()).state]}; refusals ${JSON.stringify(second.refusals)}`);
      expect(second.refusals).toEqual([]);
      // Served: attempt 2's NARs, both.
      for (const o of outputs) {
        const info = await narinfo(o.path!);
        if (typeof info === 'number') throw new Error(`no narinfo for ${o.path}: ${info}`);
        expect([info.storePath, info.narSize, Hash.parse(info.narHash).equals(Hash.parse(o.narHash!))]).toEqual([o.path, Number(o.narSize), true]);
      }
      expect((await storedRows([out, dev])).length).toBe(2);
      const pending = rowsOf<{ n: number }>(await t.coordinator.database.db.execute(sql`select count(*)::int as n from pending_outputs where build_id = ${build!.id}`));
      expect(Number(pending[0]!.n)).toBe(0);
      // Garbage collection removes what attempt 1 left: its NAR no row names (once past
      // the orphans' grace), and its staged part of dev; attempt 2's stay.
      const old = new Date(Date.now() - ORPHAN_GRACE_MS - 60_000);
      for (const f of attempt1Files) utimesSync(join(narDir(), f), old, old);
      await t.admin.collectGarbage({ dryRun: false });
      expect(readdirSync(narDir()).filter((f) => attempt1Files.includes(f))).toEqual([]);
      expect(readdirSync(stagingDir()).filter((f) => f.startsWith(build!.id))).toEqual([]);
      for (const o of outputs) expect(await narinfo(o.path!)).not.toBe(404);
    } finally {
      await second.close();
    }
  });

  test('an attempt that fails leaves nothing served', async () => {
    const tag = { key: 'case', value: `failed-${randomUUID().slice(0, 8)}` };
    const maker = new DerivationMaker();
    const d = maker.make({ name: `half-${randomUUID().slice(0, 8)}`, outputs: ['out', 'lib'] });
    const agent = await connectTestAgent(t, { tags: [tag] });
    try {
      const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: maker.closure(d), tags: [tag] });
      const assign = await agent.nextAssignment();
      await upload(agent, assign, 'out', 'half a build\n');
      agent.send({ case: 'buildFinished', value: { buildId: build!.id, result: BuildResult.FAILURE, outputs: [], message: 'lib failed' } });
      const state = async () => (await t.admin.getBuild({ id: build!.id })).build!.state;
      await waitForBuilds(t.coordinator, async () => (await state()) === BuildState.FAILED, 20_000, async () => `build is ${BuildState[await state()]}`);
      expect(await narinfo(d.outputs.get('out')!)).toBe(404);
      expect(await storedRows([...d.outputs.values()])).toEqual([]);
    } finally {
      await agent.close();
    }
  });
});
