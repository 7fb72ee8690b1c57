// A full NAR disk through the real server and a real agent: the coordinator's NAR
// directory is a 4 MiB tmpfs. An upload that finds no room is RESOURCE_EXHAUSTED naming
// the path and the free space and leaves no staging file; a submission that needs no
// NAR space still works; the agent gives the build back and, once space is freed, the
// retry succeeds. --min-free-nar-gib refuses an upload before it starts, and /metrics
// shows the directory's free bytes.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import { and, eq } from 'drizzle-orm';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { Agent, agentClient } from '../../src/agent/agent.js';
import type { Builder } from '../../src/agent/builders/builder.js';
import { narUploadMessages } from '../../src/agent/uploader.js';
import { buildAttempts } from '../../src/db/schema.js';
import { silentLogger } from '../../src/logger.js';
import { dumpPath } from '../../src/store/nar-writer.js';
import { connectTestAgent } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { DerivationMaker, SYSTEM } from '../helpers/hand-builds.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus-text.js';
import { waitForBuilds } from '../helpers/wait.js';

const WAIT_MS = 30_000;

describe.each(DATABASE_KINDS)('a full NAR disk on %s', (kind) => {
  let t: TestCoordinator;
  let narDir: string;
  let work: string;
  const maker = new DerivationMaker();

  beforeAll(async () => {
    narDir = mkdtempSync(join(tmpdir(), 'kiln-full-nar-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', narDir]);
    work = mkdtempSync(join(tmpdir(), 'kiln-full-out-'));
    t = await startTestCoordinator(kind, {
      narDir,
      retryPolicy: { farm: { maxAttempts: 10, on: ['setup-failure', 'agent-lost'], initialBackoffMs: 200, maxBackoffMs: 200 }, byTag: [] },
    });
  });

  afterAll(async () => {
    await t?.stop();
    if (narDir) {
      execFileSync('umount', [narDir]);
      rmSync(narDir, { recursive: true, force: true });
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Fills the tmpfs until `leave` bytes are free; returns the filler's path. */
  function fill(leave: number): string {
    const filler = join(narDir, `filler-${randomUUID()}`);
    const st = execFileSync('df', ['--output=avail', '-B1', narDir]).toString().trim().split('\n')[1]!;
    writeFileSync(filler, Buffer.alloc(Math.max(0, Number(st) - leave)));
    return filler;
  }

  const stagingFiles = () => readdirSync(join(narDir, 'staging'));

  test('an upload that finds no room is RESOURCE_EXHAUSTED with the path and free space, and leaves no staging file', async () => {
    const d = maker.make({ name: `big-${randomUUID().slice(0, 8)}` });
    const agent = await connectTestAgent(t);
    try {
      await t.admin.submitBuild({ derivationPath: d.path, derivations: maker.closure(d) });
      const assign = await agent.nextAssignment();
      const file = join(work, 'big');
      writeFileSync(file, randomBytes(3 << 20)); // does not compress: more than the disk has left
      fill(1 << 20);
      try {
        const client = agentClient(t.coordinator.url, agent.agentId, agent.password);
        const header = { buildId: assign.buildId, outputName: 'out', storePath: assign.outputs[0]!.path, offset: 0n, references: [] };
        async function* requests() {
          for await (const message of narUploadMessages(header, dumpPath(file, { chunkSize: 256 << 10 }))) yield { message };
        }
        const err = await client.uploadOutput(requests()).then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(err?.code).toBe(Code.ResourceExhausted);
        expect(err?.rawMessage).toContain(`out of space storing the upload ${assign.buildId}.${assign.attempt}.out at ${join(narDir, 'staging')}`);
        expect(err?.rawMessage).toMatch(/no space left on device; [\d.]+ (B|KiB|MiB) free on /);
        expect(stagingFiles()).toEqual([]);
        expect((await client.queryUpload({ buildId: assign.buildId, outputName: 'out' })).offset).toBe(0n);

        // A submission whose .drv the cache holds needs no NAR space: it works on the full disk.
        fill(0);
        const again = await t.admin.submitBuild({ derivationPath: d.path, derivations: maker.closure(d) });
        expect(again.build!.derivationPath).toBe(d.path);
        // One that needs room for a new .drv is refused as out of space, leaving nothing.
        const fresh = maker.make({ name: `fresh-${randomUUID().slice(0, 8)}-${'x'.repeat(100)}` });
        const refused = await t.admin.submitBuild({ derivationPath: fresh.path, derivations: maker.closure(fresh) }).then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(refused?.code).toBe(Code.ResourceExhausted);
        expect(refused?.rawMessage).toContain(`out of space storing`);
        expect(stagingFiles()).toEqual([]);
      } finally {
        for (const f of readdirSync(narDir).filter((n) => n.startsWith('filler-'))) rmSync(join(narDir, f));
      }
    } finally {
      await agent.close();
    }
  });

  test('the agent gives the build back when its upload finds the disk full; once space is freed the retry succeeds', async () => {
    const d = maker.make({ name: `retried-${randomUUID().slice(0, 8)}` });
    const builder: Builder = {
      name: 'random',
      async build(job) {
        const diskPath = join(work, `out-${randomUUID()}`);
        writeFileSync(diskPath, randomBytes(3 << 20));
        return { kind: 'success', outputs: job.outputs.map((o) => ({ name: o.name, storePath: o.path, diskPath, references: [] })) };
      },
    };
    const { agent: created } = await t.admin.createAgent({ name: 'full-disk' });
    const { password } = await t.admin.createAgentPassword({ agentId: created!.id });
    const agent = new Agent({ coordinatorUrls: [t.coordinator.url], agentId: created!.id, password, systems: [SYSTEM], maxParallel: 1, tags: [], builder: () => builder, log: silentLogger() });
    const filler = fill(1 << 20);
    agent.start();
    try {
      const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: maker.closure(d) });
      const id = build!.id;
      const gaveBack = async () =>
        (await t.coordinator.database.db.select().from(buildAttempts).where(and(eq(buildAttempts.buildId, id), eq(buildAttempts.outcome, 'setup-failure')))).length > 0;
      await waitForBuilds(t.coordinator, gaveBack, WAIT_MS, async () => `build ${id} to be given back`);
      const [attempt] = await t.coordinator.database.db.select().from(buildAttempts).where(and(eq(buildAttempts.buildId, id), eq(buildAttempts.outcome, 'setup-failure')));
      expect(attempt!.message).toContain('the coordinator could not take the outputs now: out of space storing');
      expect((await t.admin.getBuild({ id })).build!.state).not.toBe(BuildState.FAILED);
      rmSync(filler);
      await waitForBuilds(
        t.coordinator,
        async () => (await t.admin.getBuild({ id })).build!.state === BuildState.SUCCEEDED,
        WAIT_MS,
        async () => `build ${id} to succeed; it is ${BuildState[(await t.admin.getBuild({ id })).build!.state]}`,
      );
    } finally {
      await agent.shutdown();
    }
  });
});

describe('--min-free-nar-gib', () => {
  let t: TestCoordinator;
  beforeAll(async () => {
    t = await startTestCoordinator('pglite', { minFreeNarBytes: 2 ** 60 });
  });
  afterAll(async () => t?.stop());

  test('refuses an upload before it starts while the NAR directory has less free, and /metrics shows its free bytes', async () => {
    const maker = new DerivationMaker();
    const d = maker.make({ name: `floor-${randomUUID().slice(0, 8)}` });
    const agent = await connectTestAgent(t);
    try {
      await t.admin.submitBuild({ derivationPath: d.path, derivations: maker.closure(d) });
      const assign = await agent.nextAssignment();
      const client = agentClient(t.coordinator.url, agent.agentId, agent.password);
      async function* requests() {
        yield { message: { case: 'header' as const, value: { buildId: assign.buildId, outputName: 'out', storePath: assign.outputs[0]!.path, offset: 0n, references: [] } } };
      }
      const err = await client.uploadOutput(requests()).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.ResourceExhausted);
      expect(err?.rawMessage).toMatch(/^refused the upload .*\.out: .* has [\d.]+ \w+ free, below the 1048576 TiB the coordinator keeps free \(--min-free-nar-gib\)/);
      const metrics = parsePrometheusText(await (await fetch(`${t.coordinator.url}/metrics`)).text());
      expect(sampleValue(metrics, 'kiln_nar_dir_free_bytes', {})).toBeGreaterThan(0);
    } finally {
      await agent.close();
    }
  });
});
