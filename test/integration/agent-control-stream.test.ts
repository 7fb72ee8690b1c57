// The agent's end of the control stream (ControlStream, and the Agent around it) against
// a real coordinator: a report the coordinator refuses is logged, dropped from the
// resend queue, and the stream stays up (no reconnect that would send it again); a
// refused success ends the build as a failure that says why.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { eq } from 'drizzle-orm';
import { Code } from '@connectrpc/connect';
import { pino } from 'pino';
import { BuildResult, ReportKind, type Refusal } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { buildAttempts } from '../../src/db/schema.js';
import { silentLogger } from '../../src/logger.js';
import { waitForBuilds } from '../helpers/wait.js';
import { Agent, agentClient } from '../../src/agent/agent.js';
import type { Builder } from '../../src/agent/builders/builder.js';
import { ControlStream, type Report } from '../../src/agent/control-stream.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { chain, closureOf, SYSTEM } from '../helpers/derivations.js';

const WAIT_MS = 20_000;

/** Resolves with the first value `arm` delivers, or rejects after a bound. */
function nextEvent<T>(what: string, arm: (deliver: (value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} within ${WAIT_MS} ms`)), WAIT_MS);
    arm((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

describe.each(DATABASE_KINDS)('the agent control stream on %s', (kind) => {
  let t: TestCoordinator;
  let leaf: string;
  let rebuilt: string;
  let unsendable: string;

  beforeAll(async () => {
    // nix-instantiate runs synchronously: before the coordinator serves.
    leaf = chain(`${kind}-control-stream`).leaf;
    rebuilt = chain(`${kind}-control-stream-rebuilt`).leaf;
    unsendable = chain(`${kind}-control-stream-unsendable`).leaf;
    t = await startTestCoordinator(kind);
  });
  afterAll(async () => {
    await t?.stop();
  });

  test('a refused report is logged with its code and message, dropped from the resend queue, and the stream stays up', async () => {
    // A build nobody holds: any report on it is refused with PERMISSION_DENIED.
    const { build } = await t.admin.submitBuild({ derivationPath: leaf, derivations: closureOf(leaf), tags: [{ key: 'held-by', value: 'nobody' }] });
    const { agent } = await t.admin.createAgent({ name: 'refused' });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });

    const logged: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(line: Buffer, _encoding, done) {
        logged.push(JSON.parse(line.toString()) as Record<string, unknown>);
        done();
      },
    });
    let welcomes = 0;
    let onWelcome = () => {};
    let onRefused = (_: { buildId: string; refusal: Refusal; report: Report | undefined }) => {};
    const stream = new ControlStream({
      client: agentClient(t.coordinator.url, agent!.id, password),
      systems: [SYSTEM],
      maxParallel: 1,
      tags: [],
      version: 'test',
      log: pino({ level: 'info' }, sink),
      handlers: {
        heldBuilds: () => [],
        freeSlots: () => 0,
        onWelcome: () => {
          welcomes++;
          onWelcome();
        },
        onAssign: () => {},
        onCancel: () => {},
        onDrain: () => {},
        onRefused: (buildId, refusal, report) => onRefused({ buildId, refusal, report }),
      },
    });
    const stop = new AbortController();
    const running = stream.run(stop.signal);
    try {
      await nextEvent<void>('welcome', (deliver) => (onWelcome = deliver));
      const refused = nextEvent<{ buildId: string; refusal: Refusal; report: Report | undefined }>('refusal', (deliver) => (onRefused = deliver));
      stream.report({ case: 'buildFinished', value: { buildId: build!.id, result: BuildResult.FAILURE, message: 'not mine' } });
      expect(stream.unconfirmed()).toEqual([build!.id]);

      const { buildId, refusal, report } = await refused;
      expect(buildId).toBe(build!.id);
      expect(refusal.code).toBe(Code.PermissionDenied);
      expect(refusal.report).toBe(ReportKind.BUILD_FINISHED);
      expect(refusal.message).toContain(`build ${build!.id} is not allocated to agent ${agent!.id}`);
      expect(report?.case).toBe('buildFinished');
      expect(stream.unconfirmed()).toEqual([]);
      expect(logged).toContainEqual(
        expect.objectContaining({ msg: 'the coordinator refused a report; it is not sent again', buildId: build!.id, code: 'PermissionDenied', report: 'BUILD_FINISHED' }),
      );

      // Still the first stream: a later report is answered on it too, with no reconnect.
      const again = nextEvent<{ refusal: Refusal }>('second refusal', (deliver) => (onRefused = deliver));
      stream.report({ case: 'buildStarted', value: { buildId: build!.id } });
      expect((await again).refusal.report).toBe(ReportKind.BUILD_STARTED);
      expect(stream.connected).toBe(true);
      expect(welcomes).toBe(1);
      expect(logged.filter((l) => String(l.msg).includes('reconnecting'))).toEqual([]);
    } finally {
      stop.abort();
      await running;
    }
  });

  test('a success the coordinator refuses (the output differs from the one it holds) ends the build as failed, saying why', async () => {
    // A builder whose output differs every time, as a build that is not reproducible.
    const outDir = mkdtempSync(join(tmpdir(), 'kiln-unreproducible-'));
    let built = 0;
    const builder: Builder = {
      name: 'unreproducible',
      async build(job) {
        const diskPath = join(outDir, `${++built}`);
        writeFileSync(diskPath, randomBytes(64));
        return { kind: 'success', outputs: job.outputs.map((o) => ({ name: o.name, storePath: o.path, diskPath, references: [] })) };
      },
    };
    const tags = [{ key: 'test', value: `rebuild-${kind}` }];
    const { agent: created } = await t.admin.createAgent({ name: 'unreproducible', tags });
    const { password } = await t.admin.createAgentPassword({ agentId: created!.id });
    const agent = new Agent({
      coordinatorUrls: [t.coordinator.url],
      agentId: created!.id,
      password,
      systems: [SYSTEM],
      maxParallel: 1,
      tags: [],
      builder: () => builder,
      log: silentLogger(),
    });
    const finished = (id: string) =>
      waitForBuilds(
        t.coordinator,
        async () => [BuildState.SUCCEEDED, BuildState.FAILED].includes((await t.admin.getBuild({ id })).build!.state),
        WAIT_MS,
        async () => `build ${id} to finish; it is ${BuildState[(await t.admin.getBuild({ id })).build!.state]}`,
      );
    try {
      const submit = async () => (await t.admin.submitBuild({ derivationPath: rebuilt, derivations: closureOf(rebuilt), tags })).build!.id;
      // Both submitted before the agent connects, so before either is built: once the
      // cache holds the output, a new build of it succeeds at submission (cached-builds.ts)
      // and reaches no agent. The agent builds one at a time, the first first.
      const first = await submit();
      const second = await submit();
      agent.start();
      await finished(first);
      expect((await t.admin.getBuild({ id: first })).build!.state).toBe(BuildState.SUCCEEDED);

      // The output is small, so it travels inside the report; the cache has the path
      // already, so the differing NAR is not stored at all.
      // (Uploaded files only: the publish hook adds other compressions meanwhile.)
      const nars = () => readdirSync(join(t.dataDir, 'nars', 'nar')).filter((f) => f.endsWith('.nar.lz4')).sort();
      const narsBefore = nars();
      await finished(second);
      expect((await t.admin.getBuild({ id: second })).build!.state).toBe(BuildState.FAILED);
      expect(nars()).toEqual(narsBefore);
      const [attempt] = await t.coordinator.database.db.select().from(buildAttempts).where(eq(buildAttempts.buildId, second));
      expect(attempt!.outcome).toBe('failure');
      expect(attempt!.message).toContain(`the coordinator refused the build's success: build ${second} cannot succeed: output out (`);
      expect(attempt!.message).toContain(`differs: the report says`);
      expect(attempt!.message).toContain(`uploaded by build ${first}`);
      expect(built).toBe(2);
    } finally {
      await agent.shutdown();
      rmSync(outDir, { recursive: true, force: true });
    }
  });
  test('a build whose outputs the agent cannot send ends as a failure that says why, not started for ever', async () => {
    // A builder whose output is a FIFO, which no NAR can hold.
    const outDir = mkdtempSync(join(tmpdir(), 'kiln-unsendable-'));
    const builder: Builder = {
      name: 'fifo',
      async build(job) {
        const diskPath = join(outDir, 'out');
        execFileSync('mkfifo', [diskPath]);
        return { kind: 'success', outputs: job.outputs.map((o) => ({ name: o.name, storePath: o.path, diskPath, references: [] })) };
      },
    };
    const tags = [{ key: 'test', value: `unsendable-${kind}` }];
    const { agent: created } = await t.admin.createAgent({ name: 'unsendable', tags });
    const { password } = await t.admin.createAgentPassword({ agentId: created!.id });
    const agent = new Agent({ coordinatorUrls: [t.coordinator.url], agentId: created!.id, password, systems: [SYSTEM], maxParallel: 1, tags: [], builder: () => builder, log: silentLogger() });
    agent.start();
    try {
      const { build } = await t.admin.submitBuild({ derivationPath: unsendable, derivations: closureOf(unsendable), tags });
      const id = build!.id;
      await waitForBuilds(
        t.coordinator,
        async () => (await t.admin.getBuild({ id })).build!.state === BuildState.FAILED,
        WAIT_MS,
        async () => `build ${id} to fail; it is ${BuildState[(await t.admin.getBuild({ id })).build!.state]}`,
      );
      const [attempt] = await t.coordinator.database.db.select().from(buildAttempts).where(eq(buildAttempts.buildId, id));
      expect(attempt!.outcome).toBe('failure');
      expect(attempt!.message).toContain('the agent could not finish the build: ');
      expect(attempt!.message).toContain('FIFO');
      expect(agent.holding()).toEqual([]);
    } finally {
      await agent.shutdown();
      rmSync(outDir, { recursive: true, force: true });
    }
  });
});
