// --max-output-size and --max-log-size through the real server, a real agent with the
// local builder and real uploads: a build whose output is over the limit fails as
// output-too-large and nothing of it is served or staged; one under it succeeds; an
// upload over the limit sent by hand is OUT_OF_RANGE naming the limit and the flag
// (declared in its header, or only counted as its bytes arrive); a build whose log
// passes the limit fails as log-too-large with its stored log cut at the limit.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import { eq } from 'drizzle-orm';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { Agent, agentClient } from '../../src/agent/agent.js';
import { LocalBuilder } from '../../src/agent/builders/local.js';
import { narUploadMessages, uploadLog } from '../../src/agent/uploader.js';
import { buildAttempts } from '../../src/db/schema.js';
import { silentLogger } from '../../src/logger.js';
import { parseDerivation } from '../../src/store/derivation.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { dumpPath } from '../../src/store/nar-writer.js';
import { connectTestAgent } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { closureOf, shDrv, SYSTEM } from '../helpers/derivations.js';
import { instantiate } from '../helpers/nix.js';
import { waitForBuilds } from '../helpers/wait.js';

const WAIT_MS = 60_000;
const MAX_OUTPUT = 64 << 10;
const MAX_LOG = 16 << 10;

describe('size limits', () => {
  let t: TestCoordinator;
  let root: string;
  let agent: Agent;
  let agentStopped: Promise<void> | undefined;
  const stopAgent = () => (agentStopped ??= agent.shutdown());

  beforeAll(async () => {
    t = await startTestCoordinator('pglite', { maxOutputBytes: MAX_OUTPUT, maxLogBytes: MAX_LOG });
    root = mkdtempSync(join(tmpdir(), 'kiln-size-limits-'));
    const { agent: created } = await t.admin.createAgent({ name: 'size-limits' });
    const { password } = await t.admin.createAgentPassword({ agentId: created!.id });
    agent = new Agent({
      coordinatorUrls: [t.coordinator.url],
      agentId: created!.id,
      password,
      systems: [SYSTEM],
      maxParallel: 2,
      tags: [],
      builder: (cache) => new LocalBuilder({ cache, storeRoot: join(root, 'store') }),
      log: silentLogger(),
    });
    agent.start();
  });

  afterAll(async () => {
    if (agent) await stopAgent();
    await t?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const stagingFiles = () => readdirSync(join(t.dataDir, 'nars', 'staging'));

  /** Submits a /bin/sh derivation and waits until it has ended; returns its id and output path. */
  async function buildToEnd(name: string, script: string): Promise<{ id: string; out: string }> {
    const [drv] = instantiate(shDrv(`${name}-${randomUUID().slice(0, 8)}`, script));
    const out = parseDerivation(readFileSync(drv!, 'utf8')).outputs.get('out')!.path;
    const { build } = await t.admin.submitBuild({ derivationPath: drv!, derivations: closureOf(drv!) });
    const id = build!.id;
    const ended = async () => [BuildState.SUCCEEDED, BuildState.FAILED].includes((await t.admin.getBuild({ id })).build!.state);
    await waitForBuilds(t.coordinator, ended, WAIT_MS, async () => `build ${id} to end; it is ${BuildState[(await t.admin.getBuild({ id })).build!.state]}`);
    return { id, out };
  }

  const attemptsOf = (id: string) => t.coordinator.database.db.select().from(buildAttempts).where(eq(buildAttempts.buildId, id));
  const narinfoStatus = async (path: string) => (await fetch(`${t.coordinator.url}/${parseStorePath(path).hashPart}.narinfo`)).status;

  test('a build whose output is over --max-output-size fails as output-too-large, once, and nothing of it is served or staged', async () => {
    const { id, out } = await buildToEnd('too-big', 'yes kiln | head -c 200000 > $out');
    expect((await t.admin.getBuild({ id })).build!.state).toBe(BuildState.FAILED);
    const attempts = await attemptsOf(id);
    expect(attempts).toHaveLength(1); // not retried by the default policy
    expect(attempts[0]!.outcome).toBe('output-too-large');
    expect(attempts[0]!.message).toContain(`output ${out} is `);
    expect(attempts[0]!.message).toContain("over the coordinator's max-output-size of 64 KiB (--max-output-size)");
    expect(await narinfoStatus(out)).toBe(404);
    expect(stagingFiles()).toEqual([]);
  });

  test('a build whose output is under the limit succeeds and is served', async () => {
    const { id, out } = await buildToEnd('small', 'yes kiln | head -c 1000 > $out');
    expect((await t.admin.getBuild({ id })).build!.state).toBe(BuildState.SUCCEEDED);
    expect(await narinfoStatus(out)).toBe(200);
  });

  test('a build whose log passes --max-log-size fails as log-too-large and its stored log is cut at the limit', async () => {
    const { id } = await buildToEnd('loud', 'yes "a line of log" | head -c 100000; echo done > $out');
    expect((await t.admin.getBuild({ id })).build!.state).toBe(BuildState.FAILED);
    const attempts = await attemptsOf(id);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]!.outcome).toBe('log-too-large');
    expect(attempts[0]!.message).toContain(`the log of build ${id} passed the coordinator's max-log-size of 16 KiB (--max-log-size)`);
    const chunks: Uint8Array[] = [];
    for await (const r of t.admin.getBuildLog({ id, attempt: 0 })) chunks.push(r.chunk);
    const log = Buffer.concat(chunks);
    expect(log.length).toBeGreaterThan(0);
    expect(log.length).toBeLessThanOrEqual(MAX_LOG);
  });

  describe('an upload sent by hand', () => {
    let work: string;
    beforeAll(() => {
      work = mkdtempSync(join(tmpdir(), 'kiln-size-upload-'));
    });
    afterAll(() => rmSync(work, { recursive: true, force: true }));

    async function assigned() {
      const [drv] = instantiate(shDrv(`by-hand-${randomUUID().slice(0, 8)}`, 'echo x > $out'));
      const stream = await connectTestAgent(t, { maxParallel: 1 });
      await t.admin.submitBuild({ derivationPath: drv!, derivations: closureOf(drv!) });
      return { stream, drv: drv! };
    }

    async function send(header: { buildId: string; outputName: string; storePath: string; offset: bigint; references: string[]; narSize: bigint }, file: string, stream: Awaited<ReturnType<typeof connectTestAgent>>) {
      const client = agentClient(t.coordinator.url, stream.agentId, stream.password);
      async function* requests() {
        for await (const message of narUploadMessages(header, dumpPath(file, { chunkSize: 16 << 10 }))) yield { message };
      }
      return client.uploadOutput(requests()).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    }

    test('one that declares a NAR over the limit is OUT_OF_RANGE naming the limit and the flag; one that only sends more is refused too', async () => {
      await stopAgent(); // the hand-driven agent alone takes builds from here on
      const { stream } = await assigned();
      try {
        const assign = await stream.nextAssignment();
        const file = join(work, 'big');
        writeFileSync(file, randomBytes(200_000));
        const header = { buildId: assign.buildId, outputName: 'out', storePath: assign.outputs[0]!.path, offset: 0n, references: [] as string[] };

        const declared = await send({ ...header, narSize: 200_120n }, file, stream);
        expect(declared?.code).toBe(Code.OutOfRange);
        expect(declared?.rawMessage).toContain(`output ${header.storePath} is 195.4 KiB, over the coordinator's max-output-size of 64 KiB (--max-output-size)`);
        expect(stagingFiles()).toEqual([]);

        const undeclared = await send({ ...header, narSize: 0n }, file, stream);
        expect(undeclared?.code).toBe(Code.OutOfRange);
        expect(undeclared?.rawMessage).toMatch(new RegExp(`^output ${header.storePath} is more than [\\d.]+ KiB, over the coordinator's max-output-size of 64 KiB \\(--max-output-size\\)$`));
        expect(stagingFiles()).toEqual([]);
        expect(await narinfoStatus(header.storePath)).toBe(404);
      } finally {
        await stream.close();
      }
    });

    test('a log over the limit is OUT_OF_RANGE naming the limit and the flag, and nothing of it is stored', async () => {
      await stopAgent();
      const { stream } = await assigned();
      try {
        const assign = await stream.nextAssignment();
        const file = join(work, 'loud.log');
        writeFileSync(file, 'a line of log\n'.repeat(4000)); // 56000 bytes
        const client = agentClient(t.coordinator.url, stream.agentId, stream.password);
        const err = await uploadLog({ client, signal: new AbortController().signal, log: silentLogger() }, assign.buildId, file).then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(err?.code).toBe(Code.OutOfRange);
        expect(err?.rawMessage).toBe(`the log of build ${assign.buildId} passed the coordinator's max-log-size of 16 KiB (--max-log-size)`);
        const [attempt] = (await attemptsOf(assign.buildId)).filter((a) => a.attempt === assign.attempt);
        expect(attempt!.logSize ?? 0).toBe(0);
        expect(readdirSync(join(t.dataDir, 'logs')).filter((f) => f.startsWith(assign.buildId))).toEqual([]);
      } finally {
        await stream.close();
      }
    });
  });
});
