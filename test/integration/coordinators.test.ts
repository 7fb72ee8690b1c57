// An agent's coordinators through the real gRPC server: a name resolving to several
// addresses is an endpoint per address, and calls move past one out of reach.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { Code, ConnectError } from '@connectrpc/connect';
import { retryTransient } from '../../src/agent/backoff.js';
import { Coordinators } from '../../src/agent/coordinators.js';
import { silentLogger } from '../../src/logger.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';

describe('an agent with several coordinator addresses', () => {
  let t: TestCoordinator;
  let credentials: { agentId: string; password: string };

  beforeAll(async () => {
    t = await startTestCoordinator('pglite');
    const { agent } = await t.admin.createAgent({ name: 'addresses' });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    credentials = { agentId: agent!.id, password };
  });
  afterAll(() => t?.stop());

  test('dials each address a name resolves to, and moves past one that refuses to the next', async () => {
    const port = new URL(t.coordinator.url).port;
    // The coordinator listens on 127.0.0.1 only: 127.0.0.3 refuses.
    const asked: string[] = [];
    const coordinators = new Coordinators([`http://replicas.kiln.test:${port}`], credentials, silentLogger(), async (host) => {
      asked.push(host);
      return ['127.0.0.3', '127.0.0.1'];
    });
    await coordinators.resolve();
    expect(asked).toEqual(['replicas.kiln.test']);
    expect(coordinators.all().map((e) => e.address)).toEqual(['127.0.0.3', '127.0.0.1']);

    // The server's own answer (this agent holds no such build) comes back once the call
    // has moved to the address that listens; the first try was refused.
    const tries: Code[] = [];
    const answer = await retryTransient({ what: 'query', signal: new AbortController().signal, budgetMs: 10_000, log: { warn: (o) => tries.push((o as { code: Code }).code) }, initialMs: 1 }, () =>
      coordinators.client.queryUpload({ buildId: randomUUID(), outputName: 'out' }),
    ).catch((e: unknown) => ConnectError.from(e));
    expect(tries.length).toBe(1);
    expect(answer).toBeInstanceOf(ConnectError);
    expect([Code.PermissionDenied, Code.NotFound, Code.FailedPrecondition]).toContain((answer as ConnectError).code);
    expect(coordinators.current().address).toBe('127.0.0.1');
  });

  test('a name that resolves to one address is dialled by name', async () => {
    const coordinators = new Coordinators(['http://localhost:1'], credentials, silentLogger(), async () => ['127.0.0.1']);
    await coordinators.resolve();
    expect(coordinators.all().map((e) => [e.url, e.address])).toEqual([['http://localhost:1', undefined]]);
  });
});
