// An agent against a coordinator that goes away: an upload cut off by a SIGKILL resumes
// after a restart that took longer than the old 5 s retry budget; a spent budget is an
// `infrastructure` failure that the default policy builds again; an agent given two
// coordinators whose first is down builds through the second.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createCipheriv, createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { Agent } from '../../src/agent/agent.js';
import type { Builder } from '../../src/agent/builders/builder.js';
import { createAdminClient, type AdminClient } from '../../src/client/admin-client.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { startCoordinatorProcess, type CoordinatorProcess } from '../helpers/coordinator-process.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { captureLog, type LogCapture } from '../helpers/log-capture.js';
import { freePort } from '../helpers/postgres-server.js';
import { checkServedNar } from '../helpers/served-nar.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { waitUntil } from '../helpers/wait.js';

const SYSTEM = 'x86_64-linux';
/** Larger than the inline limit, so that it goes by its own UploadOutput call, in several frames. */
const OUTPUT_BYTES = 24 << 20;
/** Longer than the agent's old retry budget (6 tries, about 5 s). */
const OUTAGE_MS = 7_000;

describe('an agent through coordinator outages', () => {
  let database: TestDatabase;
  let dir: string;
  let port: number;
  let coordinator: CoordinatorProcess | undefined;
  let admin: AdminClient;
  const cleanups: (() => Promise<void>)[] = [];

  const startCoordinator = async () => {
    coordinator = await startCoordinatorProcess({ dataDir: join(dir, 'data'), databaseUrl: database.url, port });
    admin = createAdminClient(coordinator.url, readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim());
  };

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    dir = mkdtempSync(join(tmpdir(), 'kiln-resilience-'));
    port = await freePort();
    await startCoordinator();
  }, 60_000);

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    await coordinator?.stop('SIGKILL');
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A builder whose one output is OUTPUT_BYTES of bytes that do not compress, the same for
   * every attempt of a build (as a reproducible build's).
   */
  function bigOutputBuilder(): Builder {
    return {
      name: 'big-output',
      async build(job) {
        const diskPath = join(dir, `out-${job.buildId}-${randomUUID()}`);
        const key = createHash('sha256').update(job.buildId).digest();
        writeFileSync(diskPath, createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(OUTPUT_BYTES)));
        return { kind: 'success', outputs: job.outputs.map((o) => ({ name: o.name, storePath: o.path, diskPath, references: [] })) };
      },
    };
  }

  async function startAgent(name: string, urls: (string | undefined)[], retryForMs: number): Promise<{ agent: Agent; logs: LogCapture; tag: { key: string; value: string } }> {
    const tag = { key: 'agent', value: `${name}-${randomUUID().slice(0, 8)}` };
    const { agent: created } = await admin.createAgent({ name, tags: [tag] });
    const { password } = await admin.createAgentPassword({ agentId: created!.id });
    const logs = captureLog();
    const agent = new Agent({
      coordinatorUrls: urls.map((u) => u ?? coordinator!.url),
      agentId: created!.id,
      password,
      systems: [SYSTEM],
      maxParallel: 1,
      tags: [tag],
      builder: () => bigOutputBuilder(),
      retryForMs,
      log: logs.log,
    });
    agent.start();
    cleanups.push(() => agent.shutdown());
    return { agent, logs, tag };
  }

  async function submit(name: string, tag: { key: string; value: string }): Promise<{ id: string; output: string }> {
    const d = makeDerivation({ name: `${name}-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh' }, '/nix/store', new Map());
    const { build } = await admin.submitBuild({ derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }], tags: [tag] });
    return { id: build!.id, output: d.outputs.get('out')! };
  }

  async function attempts(buildId: string): Promise<string[]> {
    const sql = postgres(database.url!, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql<{ outcome: string | null }[]>`select outcome from build_attempts where build_id = ${buildId} order by attempt`;
      return rows.map((r) => r.outcome ?? 'running');
    } finally {
      await sql.end();
    }
  }

  const stateOf = async (id: string) => (await admin.getBuild({ id })).build!.state;
  const finished = (id: string, logs: LogCapture, timeoutMs: number) =>
    waitUntil(
      async () => [BuildState.SUCCEEDED, BuildState.FAILED].includes(await stateOf(id)),
      timeoutMs,
      async () => `build ${id} is ${BuildState[await stateOf(id)]}; the agent said:\n${logs.lines.slice(-12).map((l) => JSON.stringify(l)).join('\n')}`,
    );

  test('an upload cut off by a SIGKILL of the coordinator goes on after a restart that took longer than 5 s, from the offset the restarted coordinator gives; one attempt, and the NAR served is whole', async () => {
    const proxy: TcpProxy = await startTcpProxy({ port });
    cleanups.push(() => proxy.close());
    const { logs, tag } = await startAgent('outage', [proxy.url], 120_000);
    // Held once a third of the output has gone through: the coordinator holds part of it.
    const held = proxy.holdAfter(OUTPUT_BYTES / 3);
    const { id, output } = await submit('outage', tag);
    await held;
    expect(await coordinator!.stop('SIGKILL')).toBe(null);
    proxy.cut();
    const down = Date.now();
    await logs.waitFor((l) => l.msg === 'upload of output out failed; retrying' && Number(l.try) >= 2, 30_000, 'the agent to retry its upload');
    // The outage itself: longer than the budget the agent used to have.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, OUTAGE_MS - (Date.now() - down))));
    await startCoordinator();

    await finished(id, logs, 60_000);
    expect(await stateOf(id)).toBe(BuildState.SUCCEEDED);
    expect(await attempts(id)).toEqual(['success']);
    const retries = logs.lines.filter((l) => l.msg === 'upload of output out failed; retrying');
    expect(retries.length).toBeGreaterThanOrEqual(2);
    // From where the restarted coordinator said it stood (QueryUpload).
    const resumed = logs.lines.find((l) => l.msg === 'upload resumed and completed');
    expect(resumed).toBeDefined();
    console.log(`upload retried ${retries.length} times over an outage of ${Date.now() - down} ms; resumed at byte ${String(resumed!.resumedAt)}`);
    expect((await checkServedNar(coordinator!.url, output)).narSize).toBeGreaterThan(OUTPUT_BYTES);
  }, 150_000);

  test("a retry budget spent ends the attempt as 'infrastructure', and the default policy builds it again", async () => {
    const proxy = await startTcpProxy({ port });
    cleanups.push(() => proxy.close());
    const { logs, tag } = await startAgent('budget', [proxy.url], 2_000);
    const held = proxy.holdAfter(OUTPUT_BYTES / 4);
    const { id, output } = await submit('budget', tag);
    await held;
    // The coordinator stays up; this agent cannot reach it for longer than its budget.
    proxy.cut({ refuse: true });
    await logs.waitFor((l) => l.msg === 'build crashed in the agent', 30_000, 'the agent to give the build up');
    proxy.restore();

    await waitUntil(
      async () => (await attempts(id)).length >= 2 && (await stateOf(id)) === BuildState.SUCCEEDED,
      60_000,
      async () => `attempts ${JSON.stringify(await attempts(id))}, build ${BuildState[await stateOf(id)]}: ${JSON.stringify((await admin.getBuild({ id })).build!.attempts.map((a) => a.message))}`,
    );
    expect(await attempts(id)).toEqual(['infrastructure', 'success']);
    const sql = postgres(database.url!, { max: 1, onnotice: () => {} });
    try {
      const [first] = await sql<{ message: string }[]>`select message from build_attempts where build_id = ${id} and attempt = 1`;
      expect(first!.message).toContain('upload of output out: still failing after');
    } finally {
      await sql.end();
    }
    await checkServedNar(coordinator!.url, output);
  }, 120_000);

  test('an agent given two coordinators whose first is down builds through the second', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const { logs, tag } = await startAgent('second', [dead, undefined], 60_000);
    const { id, output } = await submit('second', tag);
    await finished(id, logs, 60_000);
    expect(await stateOf(id)).toBe(BuildState.SUCCEEDED);
    expect(await attempts(id)).toEqual(['success']);
    expect(logs.lines.some((l) => l.msg === 'coordinator out of reach; moving to the next' && l.from === dead)).toBe(true);
    await checkServedNar(coordinator!.url, output);
  }, 90_000);
});
