// Agents that register themselves with a registration token: the token's life (made,
// listed, revoked, expired) through the real gRPC server on both databases, and the CLI
// and `kiln agent run --register-token` as child processes.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { AgentService } from '../../gen/kiln/v1/agent_pb.js';
import { agentRegistrationTokens } from '../../src/db/schema.js';
import { LoginThrottle } from '../../src/coordinator/login-throttle.js';
import { REGISTRATION_TOKEN_HEADER } from '../../src/protocol/credentials.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { cliEnv, KILN_BIN, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { waitUntil } from '../helpers/wait.js';

function registrar(url: string, token: string | undefined) {
  const withToken: Interceptor = (next) => (req) => {
    if (token !== undefined) req.header.set(REGISTRATION_TOKEN_HEADER, token);
    return next(req);
  };
  return createClient(AgentService, createGrpcTransport({ baseUrl: url, interceptors: [withToken] }));
}

async function refusal(p: Promise<unknown>): Promise<ConnectError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

describe.each(DATABASE_KINDS)('registration tokens on %s', (kind) => {
  let t: TestCoordinator;
  let now = Date.now();
  beforeAll(async () => {
    t = await startTestCoordinator(kind, { loginThrottle: new LoginThrottle({ now: () => now, peerFreeFailures: 3 }) });
  });
  afterAll(async () => {
    await t?.stop();
  });

  test('a token registers agents with its tags, is kept only hashed, and counts its registrations', async () => {
    const { token, secret } = await t.admin.createRegistrationToken({ tags: [{ key: 'rack', value: 'a7' }] });
    const rows = await t.coordinator.database.db.select().from(agentRegistrationTokens);
    expect(rows.some((r) => r.hash.includes(secret) || JSON.stringify(r).includes(secret))).toBe(false);
    const first = await registrar(t.coordinator.url, secret).register({ name: 'self-1' });
    const second = await registrar(t.coordinator.url, secret).register({ name: 'self-2' });
    expect(first.agentId).not.toBe(second.agentId);
    expect(first.tags).toEqual([expect.objectContaining({ key: 'rack', value: 'a7' })]);
    const { agents } = await t.admin.listAgents({});
    const registered = agents.find((a) => a.id === first.agentId)!;
    expect(registered.name).toBe('self-1');
    expect(registered.tags).toEqual([expect.objectContaining({ key: 'rack', value: 'a7' })]);
    expect(registered.passwordCount).toBe(1);
    const { tokens } = await t.admin.listRegistrationTokens({});
    expect(tokens.find((x) => x.id === token!.id)!.registrations).toBe(2);
  });

  test('a revoked token registers nothing, and says so', async () => {
    const { token, secret } = await t.admin.createRegistrationToken({});
    const before = (await t.admin.listAgents({})).agents.length;
    const { token: revoked } = await t.admin.revokeRegistrationToken({ id: token!.id });
    expect(revoked!.revokedAt).toBeDefined();
    const err = await refusal(registrar(t.coordinator.url, secret).register({ name: 'late' }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toContain('revoked');
    expect((await t.admin.listAgents({})).agents.length).toBe(before);
  });

  test('an expired token registers nothing; a token cannot be made already expired', async () => {
    const { token, secret } = await t.admin.createRegistrationToken({ expiresAt: timestampFromDate(new Date(Date.now() + 60_000)) });
    await t.coordinator.database.db.update(agentRegistrationTokens).set({ expiresAt: new Date(Date.now() - 1000) });
    const before = (await t.admin.listAgents({})).agents.length;
    const err = await refusal(registrar(t.coordinator.url, secret).register({ name: 'expired' }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toContain(`${token!.id} expired`);
    expect((await t.admin.listAgents({})).agents.length).toBe(before);
    const past = await refusal(t.admin.createRegistrationToken({ expiresAt: timestampFromDate(new Date(Date.now() - 1000)) }));
    expect(past.code).toBe(Code.InvalidArgument);
  });

  test('guessed tokens are refused and then slowed down for the peer', async () => {
    now += 3_600_000; // earlier tests' refusals are forgotten
    const { secret } = await t.admin.createRegistrationToken({});
    expect((await refusal(registrar(t.coordinator.url, undefined).register({ name: 'x' }))).code).toBe(Code.Unauthenticated);
    // Failures count from the earlier tests' refusals on: at most 3 before the wait.
    const codes: Code[] = [];
    for (let i = 0; i < 4; i++) codes.push((await refusal(registrar(t.coordinator.url, `kiln-reg-guess${i}`).register({ name: 'x' }))).code);
    expect(codes[0]).toBe(Code.Unauthenticated);
    expect(codes.at(-1)).toBe(Code.ResourceExhausted);
    // Even the right token waits out the peer's failures.
    const slowed = await refusal(registrar(t.coordinator.url, secret).register({ name: 'x' }));
    expect(slowed.code).toBe(Code.ResourceExhausted);
    now += 3_600_000;
    await expect(registrar(t.coordinator.url, secret).register({ name: 'after-wait' })).resolves.toMatchObject({ agentId: expect.any(String) });
  });
});

describe('kiln agent token and kiln agent run --register-token as child processes', () => {
  let t: TestCoordinator;
  let dir: string;
  beforeAll(async () => {
    t = await startTestCoordinator('pglite');
    dir = mkdtempSync(join(tmpdir(), 'kiln-register-'));
  });
  afterAll(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function runAgent(tokenFile: string, credentialsFile: string) {
    const child = spawn(process.execPath, [KILN_BIN, 'agent', 'run', '--coordinator', t.coordinator.url, '--register-token', tokenFile, '--name', 'rack-7',
      '--credentials-file', credentialsFile, '--builder', 'local', '--store', join(dir, 'store'), '--state-dir', join(dir, 'state'), '--max-parallel', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return { output: () => output, exited, stop: async () => { if (child.exitCode === null) child.kill('SIGTERM'); return exited; } };
  }

  async function connectedAgents() {
    return (await t.admin.listAgents({})).agents.filter((a) => a.connection !== undefined);
  }

  test('registers once, keeps its credentials 0600, reconnects with them; revoke and bad input are refused', async () => {
    const made = await runCli(['agent', 'token', 'new', '--tag', 'rack=7', '--expires', '1d'], cliEnv(t));
    expect(made).toMatchObject({ code: 0, stderr: '' });
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, made.stdout, { mode: 0o600 });
    const credentialsFile = join(dir, 'creds', 'agent.json');

    const first = runAgent(tokenFile, credentialsFile);
    await waitUntil(async () => (await connectedAgents()).length === 1, 30_000, () => `agent never connected: ${first.output()}`);
    const [agent] = await connectedAgents();
    expect(agent!.name).toBe('rack-7');
    expect(agent!.tags).toEqual([expect.objectContaining({ key: 'rack', value: '7' })]);
    expect(statSync(credentialsFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(credentialsFile, 'utf8'))).toMatchObject({ agentId: agent!.id });
    await first.stop();
    await waitUntil(async () => (await connectedAgents()).length === 0, 30_000, () => 'agent still connected after SIGTERM');

    // Revoking the token does not stop an agent that registered; it does not register again.
    const listed = await runCli(['agent', 'token', 'list', '--json'], cliEnv(t));
    const [token] = JSON.parse(listed.stdout) as { id: string; registrations: number }[];
    expect(token!.registrations).toBe(1);
    expect((await runCli(['agent', 'token', 'revoke', token!.id], cliEnv(t))).code).toBe(0);
    const second = runAgent(tokenFile, credentialsFile);
    await waitUntil(async () => (await connectedAgents()).length === 1, 30_000, () => `agent never reconnected: ${second.output()}`);
    expect((await connectedAgents())[0]!.id).toBe(agent!.id);
    expect((await t.admin.listAgents({})).agents).toHaveLength(1);
    await second.stop();

    // A new agent with the revoked token: refused, with the reason, and no file written.
    const refused = runAgent(tokenFile, join(dir, 'creds', 'other.json'));
    expect(await refused.exited).not.toBe(0);
    expect(refused.output()).toContain('revoked');
    expect(() => statSync(join(dir, 'creds', 'other.json'))).toThrow();

    const badExpiry = await runCli(['agent', 'token', 'new', '--expires', 'tomorrow'], cliEnv(t));
    expect(badExpiry.code).not.toBe(0);
    expect(badExpiry.stderr).toContain('--expires');
    const unknown = await runCli(['agent', 'token', 'revoke', '00000000-0000-4000-8000-000000000000'], cliEnv(t));
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('no registration token');
  }, 120_000);
});
