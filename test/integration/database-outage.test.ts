// Events through a PostgreSQL outage: an agent lost while the server is down is recorded
// once it is back (tried again until written), not dropped with an error in the log.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdminClient } from '../../src/client/admin-client.js';
import { startCoordinator } from '../../src/coordinator/coordinator.js';
import { silentLogger } from '../../src/logger.js';
import { Code, ConnectError } from '@connectrpc/connect';
import { agentClient } from '../../src/agent/agent.js';
import { connectTestAgent } from '../helpers/agent-stream.js';
import type { TestCoordinator } from '../helpers/coordinator.js';
import { createDatabase, startPostgres, type PostgresServer } from '../helpers/postgres-server.js';
import { waitUntil } from '../helpers/wait.js';
import { eq } from 'drizzle-orm';
import { openDatabase } from '../../src/db/connection.js';
import { storePaths } from '../../src/db/schema.js';
import { loadCacheKeys } from '../../src/substitutes/cache-keys.js';
import { startSignatureBackfill } from '../../src/substitutes/narinfo-signer.js';

describe('a PostgreSQL outage', () => {
  let server: PostgresServer;
  let t: TestCoordinator;
  beforeAll(async () => {
    // A server of its own: this test stops it.
    server = await startPostgres();
    const url = await createDatabase(server.url, 'kiln_outage');
    const dataDir = mkdtempSync(join(tmpdir(), 'kiln-outage-'));
    const coordinator = await startCoordinator({ port: 0, dataDir, database: { url }, log: silentLogger() });
    t = {
      coordinator,
      database: { kind: 'postgres', options: { url }, url, drop: async () => {} },
      dataDir,
      admin: createAdminClient(coordinator.url, coordinator.adminToken),
      async stop() {
        await coordinator.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }, 60_000);
  afterAll(async () => {
    await t?.stop();
    await server?.stop();
  });

  test('loses no agent-lost event: it is written once the database is back', async () => {
    const agent = await connectTestAgent(t);
    await waitUntil(async () => (await t.admin.listEvents({ types: ['agent-connected'] })).events.some((e) => e.agentId === agent.agentId), 10_000, () => 'agent-connected');
    await server.halt();
    await agent.close();
    await waitUntil(() => t.coordinator.sessions.get(agent.agentId) === undefined, 10_000, () => 'the coordinator to see the agent gone');
    await server.resume();
    const lost = async () => (await t.admin.listEvents({ types: ['agent-lost'] }).catch(() => ({ events: [] }))).events.filter((e) => e.agentId === agent.agentId);
    await waitUntil(async () => (await lost()).length > 0, 30_000, () => 'the agent-lost event');
    expect(await lost()).toHaveLength(1);
  }, 60_000);

  // The credential check reads the agent's password from the database, before connect
  // sees the call: with the database down it once threw a plain error into the edge's
  // refusal code, which crashed the process (both replicas of the chaos test exited).
  test('a credential check while the database is down is UNAVAILABLE, and the coordinator lives on', async () => {
    const { agent } = await t.admin.createAgent({ name: 'outage-login' });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    const client = agentClient(t.coordinator.url, agent!.id, password);
    await server.halt();
    try {
      const refused = await client.queryUpload({}).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).toBeInstanceOf(ConnectError);
      expect((refused as ConnectError).code).toBe(Code.Unavailable);
      expect((refused as ConnectError).rawMessage).toMatch(/database is out of reach/);
      const health = await fetch(`${t.coordinator.url}/healthz`);
      expect(health.status).toBe(200);
    } finally {
      await server.resume();
    }
    // Back: the same agent gets past the credential check (whatever its empty query is then told).
    const past = (err: unknown) => !(err instanceof ConnectError) || (err.code !== Code.Unavailable && err.code !== Code.Unauthenticated);
    await waitUntil(async () => client.queryUpload({}).then(() => true, past), 30_000, () => 'a call with the agent\'s credentials once the database is back');
  }, 60_000);

  // A path without current signatures is a miss until the backfill signs it: a backfill
  // that met the database down must try again while the coordinator runs.
  test('the signature backfill, failing while the database is down, tries again and signs once it is back', async () => {
    const handle = await openDatabase({ url: await createDatabase(server.url, 'kiln_backfill') });
    const keysDir = mkdtempSync(join(tmpdir(), 'kiln-backfill-keys-'));
    let backfill: ReturnType<typeof startSignatureBackfill> | undefined;
    try {
      const path = '/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-unsigned';
      await handle.db.insert(storePaths).values({
        path, hashPart: '0c6kzph7l0dcbfmjap64f0czdafn3b7x', narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', narSize: 120,
        fileName: 'x.nar', compression: 'none', fileHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', fileSize: 120,
      });
      const keys = loadCacheKeys({ dataDir: keysDir, hostname: 'outage' });
      const failures: unknown[] = [];
      const log = { info: () => undefined, error: (o: object) => void failures.push(o) };
      await server.halt();
      try {
        backfill = startSignatureBackfill(handle.db, keys, log, { initialMs: 20, maxMs: 200 });
        await waitUntil(() => failures.length >= 2, 30_000, () => 'two failed backfill tries while the database is down');
      } finally {
        await server.resume();
      }
      expect(await backfill.done).toBe(1);
      const [row] = await handle.db.select({ key: storePaths.signatureKey }).from(storePaths).where(eq(storePaths.path, path));
      expect(row?.key).toBe(keys.fingerprint);
    } finally {
      await backfill?.stop();
      await handle.close();
      rmSync(keysDir, { recursive: true, force: true });
    }
  }, 60_000);
});
