import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Code, ConnectError } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import { count } from 'drizzle-orm';
import { agentPasswords, agents } from '../../src/db/schema.js';
import { createAdminClient } from '../../src/client/admin-client.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { cliEnv, grpcJsAdminClient, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';

async function rowCounts(t: TestCoordinator) {
  const { db } = t.coordinator.database;
  const [a] = await db.select({ n: count() }).from(agents);
  const [p] = await db.select({ n: count() }).from(agentPasswords);
  return { agents: Number(a!.n), passwords: Number(p!.n) };
}

describe.each(DATABASE_KINDS)('agents through AdminService on %s', (kind) => {
  let t: TestCoordinator;
  beforeAll(async () => {
    t = await startTestCoordinator(kind);
  });
  afterAll(async () => {
    await t?.stop();
  });

  test('creates an agent with tags and lists it (Connect client over gRPC)', async () => {
    const { agent } = await t.admin.createAgent({ name: 'builder-1', tags: [{ key: 'arch', value: 'x86_64' }] });
    expect(agent!.id).toMatch(/^[0-9a-f-]{36}$/);
    const { agents: listed } = await t.admin.listAgents({});
    const found = listed.find((a) => a.id === agent!.id)!;
    expect(found.name).toBe('builder-1');
    expect(found.tags).toEqual([expect.objectContaining({ key: 'arch', value: 'x86_64' })]);
    expect(found.active).toBe(true);
  });

  test('stores agent passwords only hashed', async () => {
    const { agent } = await t.admin.createAgent({ name: 'pw' });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    expect(password.length).toBeGreaterThanOrEqual(32);
    const rows = await t.coordinator.database.db.select().from(agentPasswords);
    expect(rows.some((r) => r.hash.includes(password))).toBe(false);
    expect(rows.every((r) => r.hash.startsWith('scrypt$'))).toBe(true);
    const { agents: listed } = await t.admin.listAgents({});
    expect(listed.find((a) => a.id === agent!.id)!.passwordCount).toBe(1);
  });

  test('refuses a password for an unknown agent with NOT_FOUND and stores nothing', async () => {
    const before = await rowCounts(t);
    const err = await t.admin.createAgentPassword({ agentId: '00000000-0000-4000-8000-000000000000' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
    expect((err as ConnectError).rawMessage).toContain('00000000-0000-4000-8000-000000000000');
    expect(await rowCounts(t)).toEqual(before);
  });

  test('refuses an agent tag with a bad key with INVALID_ARGUMENT and stores nothing', async () => {
    const before = await rowCounts(t);
    const err = await t.admin.createAgent({ name: 'bad', tags: [{ key: 'has space', value: 'x' }] }).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toContain('has space');
    expect(await rowCounts(t)).toEqual(before);
  });

  test('refuses a wrong or missing admin token with UNAUTHENTICATED', async () => {
    const before = await rowCounts(t);
    const wrong = createAdminClient(t.coordinator.url, 'not-the-token');
    const err = await wrong.createAgent({ name: 'x' }).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    expect((err as ConnectError).rawMessage).toBe('wrong admin token');
    const { call } = grpcJsAdminClient(t.coordinator.url, '');
    const err2 = (await call('CreateAgent', { name: 'x' }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err2.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err2.details).toContain('missing admin token');
    expect(await rowCounts(t)).toEqual(before);
  });

  test('works for a grpc-js client built only from the .proto files', async () => {
    const { call, client } = grpcJsAdminClient(t.coordinator.url, t.coordinator.adminToken);
    const res = await call<{ agent: { id: string; name: string; tags: { key: string; value: string }[] } }>('CreateAgent', {
      name: 'from-grpc-js',
      tags: [{ key: 'k', value: 'v' }],
    });
    expect(res.agent.name).toBe('from-grpc-js');
    const pw = await call<{ password: string }>('CreateAgentPassword', { agentId: res.agent.id });
    expect(pw.password).toBeTruthy();
    const listed = await call<{ agents: { id: string; passwordCount: number }[] }>('ListAgents', {});
    expect(listed.agents.find((a) => a.id === res.agent.id)!.passwordCount).toBe(1);
    client.close();
  });

  test('kiln agent new / password / list work from the CLI', async () => {
    const env = cliEnv(t);
    const created = await runCli(['agent', 'new', '--name', 'cli-agent', '--tag', 'os=linux'], env);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const pw = await runCli(['agent', 'password', id], env);
    expect(pw.code).toBe(0);
    expect(pw.stdout.trim().length).toBeGreaterThanOrEqual(32);
    const listed = await runCli(['agent', 'list', '--json'], env);
    expect(listed.code).toBe(0);
    const agentsJson = JSON.parse(listed.stdout) as { id: string; name: string; tags: { key: string; value: string }[] }[];
    expect(agentsJson.find((a) => a.id === id)).toMatchObject({ name: 'cli-agent', tags: [{ key: 'os', value: 'linux' }] });
    const deactivated = await runCli(['agent', 'deactivate', id], env);
    expect(deactivated.stdout).toContain('inactive');
    expect((await runCli(['agent', 'activate', id], env)).stdout).toContain('active  ');
    const drained = await runCli(['agent', 'drain', id], env);
    expect(drained.code).toBe(0);
    expect(drained.stdout).toContain('told to drain');
    const unknown = await runCli(['agent', 'drain', '11111111-1111-4111-8111-111111111111'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no agent with id');
  });

  test('the CLI prints the error and exits non-zero for an unknown agent', async () => {
    const res = await runCli(['agent', 'password', '11111111-1111-4111-8111-111111111111'], cliEnv(t));
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('NotFound: no agent with id 11111111-1111-4111-8111-111111111111');
  });
});

describe('the CLI without a coordinator', () => {
  test('says plainly that the coordinator cannot be reached', async () => {
    const res = await runCli(['agent', 'list'], { KILN_COORDINATOR: 'http://127.0.0.1:1', KILN_ADMIN_TOKEN: 'x' });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('cannot reach the coordinator');
  });

  test('exits 2 with a usage message for an unknown command', async () => {
    const res = await runCli(['frobnicate']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('unknown command "frobnicate"');
  });
});
