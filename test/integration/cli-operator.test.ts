// The CLI as an operator meets it, as a child process against a real coordinator: the
// admin token's message, --help and --json, negative and out-of-range priorities, a
// canceled attempt, and build logs (one that arrives while `--follow` waits).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentClient } from '../../src/agent/agent.js';
import { uploadLog, uploadOutput } from '../../src/agent/uploader.js';
import { silentLogger } from '../../src/logger.js';
import { BuildResult } from '../../gen/kiln/v1/agent_pb.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { startCoordinator, type Coordinator } from '../../src/coordinator/coordinator.js';
import { createAdminClient } from '../../sdk/typescript/src/index.js';
import { cliEnv, grpcJsAdminClient, KILN_BIN, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { chain, closureOf } from '../helpers/derivations.js';
import { waitUntil } from '../helpers/wait.js';
import { USAGE } from '../../src/cli/usage.js';
import { ConnectError } from '@connectrpc/connect';

describe('the kiln CLI for an operator', () => {
  let t: TestCoordinator;
  let agent: TestAgentStream;
  let dir: string;

  beforeAll(async () => {
    t = await startTestCoordinator('pglite');
    agent = await connectTestAgent(t);
    dir = mkdtempSync(join(tmpdir(), 'kiln-cli-'));
  });

  afterAll(async () => {
    await agent?.close();
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('without a token, the message names KILN_ADMIN_TOKEN, KILN_DATA_DIR and the token file', async () => {
    const r = await runCli(['agent', 'list'], { KILN_COORDINATOR: t.coordinator.url, KILN_ADMIN_TOKEN: '', KILN_DATA_DIR: join(dir, 'elsewhere') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('KILN_ADMIN_TOKEN');
    expect(r.stderr).toContain(`KILN_DATA_DIR=${join(dir, 'elsewhere')}`);
    expect(r.stderr).toContain(join(dir, 'elsewhere', 'admin-token'));
    // The coordinator's data dir is the other way.
    expect((await runCli(['agent', 'list'], { KILN_COORDINATOR: t.coordinator.url, KILN_ADMIN_TOKEN: '', KILN_DATA_DIR: t.dataDir })).code).toBe(0);
  });

  test('--help works on every command and lists its flags; --json on cache public-key', async () => {
    const help = await runCli(['coordinator', '--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--nar-dir', '--tls-cert', '--tls-key', '--local-agent', '--upstream']) expect(help.stdout).toContain(flag);
    expect(help.stdout).not.toContain('kiln build submit');
    const log = await runCli(['build', 'log', '--help']);
    expect(log.stdout).toContain('kiln build log <build-id> [--attempt N] [--follow]');
    const key = await runCli(['cache', 'public-key', '--json'], cliEnv(t));
    expect(key.code).toBe(0);
    expect(JSON.parse(key.stdout)).toEqual({ kind: 'nix', publicKey: t.coordinator.nixPublicKey });
  });

  test('--help on every command of the usage text: exit 0 and that command\'s entry', async () => {
    const commands = [...USAGE.matchAll(/^ {2}kiln ((?:[a-z|-]+ ?)+)/gm)].map((m) => {
      const words = m[1]!.trim().split(' ');
      const depth = words[0] === 'coordinator' ? 1 : words[1] === 'token' ? 3 : 2;
      return words.slice(0, depth).map((w) => w.split('|')[0]!);
    });
    expect(commands.length).toBeGreaterThan(15);
    // A few at a time: twenty node processes at once outlast runCli's timeout on a busy machine.
    const results = [];
    for (let i = 0; i < commands.length; i += 4) {
      results.push(...(await Promise.all(commands.slice(i, i + 4).map(async (words) => ({ words: words.join(' '), ...(await runCli([...words, '--help'])) })))));
    }
    for (const r of results) {
      expect([r.words, r.code, r.stdout.includes(`kiln ${r.words}`)]).toEqual([r.words, 0, true]);
      expect([r.words, r.stdout.length < USAGE.length]).toEqual([r.words, true]);
    }
  }, 180_000);

  test('negative priorities as written, an out-of-range one refused with the range', async () => {
    const { leaf } = chain(randomUUID().slice(0, 8));
    const submitted = await runCli(['build', 'submit', leaf, '--priority', '-5', '--json'], cliEnv(t));
    expect(submitted.stderr).toBe('');
    const { build } = (JSON.parse(submitted.stdout) as { build: { id: string; priority: number } }[])[0]!;
    expect(build.priority).toBe(-5);
    expect((await agent.nextAssignment()).buildId).toBe(build.id);
    const changed = await runCli(['build', 'priority', build.id, '-7', '--json'], cliEnv(t));
    expect((JSON.parse(changed.stdout) as { priority: number }).priority).toBe(-7);
    const tooHigh = await runCli(['build', 'submit', leaf, '--priority', '5000000000'], cliEnv(t));
    expect(tooHigh.code).toBe(2);
    expect(tooHigh.stderr).toContain('--priority must be from -1000000 to 1000000, not 5000000000');
    await t.admin.cancelBuild({ id: build.id });
  });

  test('a canceled build\'s attempt is canceled; its log waits with --follow and arrives', async () => {
    const { leaf } = chain(randomUUID().slice(0, 8));
    const logged = JSON.parse((await runCli(['build', 'submit', leaf, '--json'], cliEnv(t))).stdout) as { build: { id: string } }[];
    const id = logged[0]!.build.id;
    const assign = await agent.nextAssignment();
    expect(assign.buildId).toBe(id);
    const none = await runCli(['build', 'log', id], cliEnv(t));
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`build ${id} has no log yet`);
    // --follow waits for the log, which the agent uploads when the build ends.
    const follow = runCli(['build', 'log', id, '--follow'], cliEnv(t));
    const file = join(dir, 'build.log');
    writeFileSync(file, 'building leaf\nall done\n');
    await uploadLog({ client: agentClient(t.coordinator.url, agent.agentId, agent.password), signal: new AbortController().signal, log: silentLogger() }, id, file);
    agent.send({ case: 'buildFinished', value: { buildId: id, result: BuildResult.FAILURE, outputs: [], message: 'exit 1' } });
    const followed = await follow;
    expect(followed).toMatchObject({ code: 0, stdout: 'building leaf\nall done\n' });
    const json = await runCli(['build', 'log', id, '--attempt', '1', '--json'], cliEnv(t));
    expect(JSON.parse(json.stdout)).toEqual({ buildId: id, attempt: 1, log: 'building leaf\nall done\n' });
    expect((await runCli(['build', 'log', id, '--attempt', '2'], cliEnv(t))).stderr).toContain(`build ${id} has no attempt 2; it has 1`);

    // A second build, assigned, then canceled: its attempt ends as canceled.
    const { leaf: other } = chain(randomUUID().slice(0, 8));
    const second = (JSON.parse((await runCli(['build', 'submit', other, '--json'], cliEnv(t))).stdout) as { build: { id: string } }[])[0]!.build.id;
    expect((await agent.nextAssignment()).buildId).toBe(second);
    expect((await runCli(['build', 'cancel', second], cliEnv(t))).code).toBe(0);
    const shown = await runCli(['build', 'show', second], cliEnv(t));
    expect(shown.stdout).toMatch(/attempt 1 .* canceled: canceled by an operator/);
    expect(shown.stdout).not.toContain('running');
  });

  test('error messages reach grpc-js clients escaped only as the gRPC spec asks', async () => {
    const { call, client } = grpcJsAdminClient(t.coordinator.url, t.coordinator.adminToken);
    const failure = (p: Promise<unknown>) => p.then(() => ({ code: -1, details: 'no error' }), (e: unknown) => e as { code: number; details: string });
    const request = { derivationPath: '/nix/store/00000000000000000000000000000000-nowhere: ünknown.drv' };
    const err = await failure(call('SubmitBuild', request));
    client.close();
    const connect = (await t.admin.submitBuild(request).catch((e: unknown) => e)) as ConnectError;
    expect(err.details).toContain('/nix/store/00000000000000000000000000000000-nowhere: ünknown.drv');
    expect(err.details).not.toMatch(/%[0-9A-F]{2}/);
    expect(err.details).toBe(connect.rawMessage);

    // A server-streaming call's error, with a literal "%" in it.
    const streaming = grpcJsAdminClient(t.coordinator.url, t.coordinator.adminToken);
    const logErr = await failure(streaming.stream('GetBuildLog', { id: 'a/b: 100%' }));
    streaming.client.close();
    expect(logErr).toMatchObject({ code: 3, details: 'build id "a/b: 100%" is not a UUID' });

    // Refused before any handler runs (the credential check at the HTTP edge): unary and streaming.
    const anonymous = grpcJsAdminClient(t.coordinator.url, '');
    const refused = await failure(anonymous.call('ListAgents', {}));
    const refusedStream = await failure(anonymous.stream('GetBuildLog', { id: randomUUID() }));
    anonymous.client.close();
    const missing = 'missing admin token: send "authorization: Bearer <token>" (the CLI reads KILN_ADMIN_TOKEN)';
    expect(refused).toMatchObject({ code: 16, details: missing });
    expect(refusedStream).toMatchObject({ code: 16, details: missing });
  });

  test('submit --wait follows the build and its input\'s build to the end; exit 0 only if all succeeded', async () => {
    const { mid, leaf } = chain(randomUUID().slice(0, 8));
    const client = agentClient(t.coordinator.url, agent.agentId, agent.password);
    const waited = runCli(['build', 'submit', mid, '--wait'], cliEnv(t));
    // The leaf (brought in for mid's input) first: it succeeds; then mid fails.
    const first = await agent.nextAssignment();
    expect(first.derivationPath).toBe(leaf);
    const file = join(dir, 'leaf-out');
    writeFileSync(file, 'leaf\n');
    const out = first.outputs[0]!;
    const info = await uploadOutput({ client, signal: new AbortController().signal, log: silentLogger() }, first.buildId, { name: out.name, storePath: out.path, diskPath: file, references: [] });
    agent.send({ case: 'buildFinished', value: { buildId: first.buildId, result: BuildResult.SUCCESS, outputs: [info], message: '' } });
    const second = await agent.nextAssignment();
    expect(second.derivationPath).toBe(mid);
    agent.send({ case: 'buildFinished', value: { buildId: second.buildId, result: BuildResult.FAILURE, outputs: [], message: 'exit 1' } });
    const r = await waited;
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${first.buildId} succeeded ${leaf}`);
    expect(r.stdout).toContain(`${second.buildId} failed ${mid}`);
    expect(r.stdout).toMatch(/1 succeeded, 1 failed or canceled/);
    // Watching the leaf alone: it succeeded, so exit 0, and --json says so.
    const watched = await runCli(['build', 'watch', first.buildId, '--json'], cliEnv(t));
    expect(watched.code).toBe(0);
    expect(JSON.parse(watched.stdout)).toMatchObject({ succeeded: true, builds: [{ id: first.buildId, state: 'BUILD_STATE_SUCCEEDED' }] });
    // The leaf submitted again: its output is in the cache, so the new build succeeds at
    // submission; --wait says so at once and exits 0, and build show says why.
    const again = await runCli(['build', 'submit', leaf, '--wait', '--json'], cliEnv(t));
    expect(again.code).toBe(0);
    const [cached] = (JSON.parse(again.stdout) as { succeeded: boolean; builds: { id: string; successReason: string; attempts: unknown[] }[] }).builds;
    expect(cached).toMatchObject({ successReason: 'cached', attempts: [] });
    expect(cached!.id).not.toBe(first.buildId);
    const shown = await runCli(['build', 'show', cached!.id], cliEnv(t));
    expect(shown.stdout).toMatch(/^state +succeeded$/m);
    expect(shown.stdout).toContain('every output was in the cache already, nothing was built');
  });

  // Last: the build it submits goes to this suite's agent, whose next assignment the tests above read.
  test('--json on every client command that prints: its output is JSON', async () => {
    const env = cliEnv(t);
    const json = async (args: string[]) => {
      const r = await runCli([...args, '--json'], env);
      expect([args.join(' '), r.code, r.stderr]).toEqual([args.join(' '), 0, '']);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    const made = await json(['agent', 'new', '--name', 'json-check']);
    const agentId = made.id as string;
    expect(agentId).toMatch(/^[0-9a-f-]{36}$/);
    const token = await json(['agent', 'token', 'new', '--expires', '1d']);
    const { leaf } = chain(randomUUID().slice(0, 8));
    const [submitted] = (await json(['build', 'submit', leaf])) as unknown as { build: { id: string } }[];
    const buildId = submitted!.build.id;
    const outputs = await Promise.all([
      json(['agent', 'password', agentId]),
      json(['agent', 'list']),
      json(['agent', 'deactivate', agentId]),
      json(['agent', 'token', 'list']),
      json(['build', 'show', buildId]),
      json(['build', 'list', '--limit', '1']),
      json(['build', 'priority', buildId, '3']),
      json(['build', 'tag', buildId, 'json=yes']),
      json(['cache', 'gc', '--dry-run']),
      json(['cache', 'public-key', '--guix']),
    ]);
    expect(outputs.every((o) => typeof o === 'object' && o !== null)).toBe(true);
    await json(['agent', 'activate', agentId]);
    await json(['agent', 'drain', agentId]);
    await json(['agent', 'token', 'revoke', token.id as string]);
    expect((await json(['build', 'cancel', buildId])).state).toBe('BUILD_STATE_CANCELED');
    expect((await json(['build', 'retry', buildId])).state).toBe('BUILD_STATE_SCHEDULED');
    await t.admin.cancelBuild({ id: buildId });
  }, 180_000);
});

/** The CLI as a child process whose output is read while it runs. */
function startCli(args: string[], env: NodeJS.ProcessEnv): { out: () => string; err: () => string; exit: Promise<number> } {
  const child = spawn(process.execPath, [KILN_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  return { out: () => out, err: () => err, exit };
}

describe('the kiln CLI across a coordinator restart', () => {
  let dir: string;
  let coordinator: Coordinator | undefined;
  const start = (port: number) => startCoordinator({ port, dataDir: join(dir, 'data'), database: { dataDir: join(dir, 'db') }, log: silentLogger() });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-cli-restart-'));
  });
  afterAll(async () => {
    await coordinator?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('build watch and build log --follow wait for a coordinator that is briefly UNAVAILABLE, then go on', async () => {
    coordinator = await start(0);
    const port = Number(new URL(coordinator.url).port);
    const env = { KILN_COORDINATOR: coordinator.url, KILN_ADMIN_TOKEN: coordinator.adminToken };
    const { leaf } = chain(randomUUID().slice(0, 8));
    const { build } = await createAdminClient(coordinator.url, coordinator.adminToken).submitBuild({ derivationPath: leaf, derivations: closureOf(leaf) });
    const id = build!.id;
    const watch = startCli(['build', 'watch', id], env);
    const follow = startCli(['build', 'log', id, '--follow'], env);
    await waitUntil(() => watch.out().includes(`${id} scheduled`), 30_000, () => `watch: ${watch.out()} ${watch.err()}`);

    // The coordinator goes away: both keep trying, and say so.
    await coordinator.stop();
    coordinator = undefined;
    const retrying = 'the coordinator is unavailable';
    await waitUntil(() => watch.err().includes(retrying) && follow.err().includes(retrying), 30_000, () => `watch: ${watch.err()}\nfollow: ${follow.err()}`);

    // Back on the same port with the same state: an agent takes the build, its log arrives, it fails.
    coordinator = await start(port);
    const t = { coordinator, admin: createAdminClient(coordinator.url, coordinator.adminToken) } as TestCoordinator;
    const agent = await connectTestAgent(t);
    try {
      expect((await agent.nextAssignment()).buildId).toBe(id);
      const file = join(dir, 'build.log');
      writeFileSync(file, 'after the restart\n');
      await uploadLog({ client: agentClient(coordinator.url, agent.agentId, agent.password), signal: new AbortController().signal, log: silentLogger() }, id, file);
      agent.send({ case: 'buildFinished', value: { buildId: id, result: BuildResult.FAILURE, outputs: [], message: 'exit 1' } });
      expect(await follow.exit).toBe(0);
      expect(follow.out()).toBe('after the restart\n');
      expect(await watch.exit).toBe(1);
      expect(watch.out()).toContain(`${id} failed ${leaf}`);
      expect(watch.err()).toContain('the coordinator answers again');
    } finally {
      await agent.close();
    }
  }, 120_000);
});
