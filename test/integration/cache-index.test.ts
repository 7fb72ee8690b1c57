// The in-memory cache index through the real coordinator on both databases: a committed
// path is served through it, a missing hash part is a 404, a collected path is a 404,
// the narinfo max-age follows cache.ttl / negativeTtl, and (PostgreSQL) a path committed
// through one coordinator is served by another on the same database.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdminClient } from '../../sdk/typescript/src/index.js';
import { startCoordinator, type CoordinatorOptions } from '../../src/coordinator/coordinator.js';
import { createLogger, silentLogger } from '../../src/logger.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { connectTestAgent } from '../helpers/agent-stream.js';
import type { TestCoordinator } from '../helpers/coordinator.js';
import { createTestDatabase, DATABASE_KINDS, type TestDatabase } from '../helpers/databases.js';
import { buildByHand, DerivationMaker } from '../helpers/hand-builds.js';
import { waitUntil } from '../helpers/wait.js';

const TTLS = { found: 1234, fresh: 1234, missing: 17 };

describe.each(DATABASE_KINDS)('cache index on %s', (kind) => {
  let database: TestDatabase;
  const dirs: string[] = [];
  const started: TestCoordinator[] = [];
  let t: TestCoordinator;

  /**
   * A coordinator; on PostgreSQL every one shares the first one's data directory (its keys
   * and NAR files), as replicas do: other keys would re-sign every path.
   */
  async function start(extra: Partial<CoordinatorOptions> = {}): Promise<TestCoordinator> {
    let dataDir = kind === 'postgres' ? dirs[0] : undefined;
    if (!dataDir) {
      dataDir = mkdtempSync(join(tmpdir(), 'kiln-cache-index-'));
      dirs.push(dataDir);
    }
    const options = kind === 'pglite' ? { dataDir: join(dataDir, 'pglite') } : database.options;
    const coordinator = await startCoordinator({
      port: 0, dataDir, database: options, submitMissingInputs: false, hookPollMs: 100, cacheTtls: TTLS,
      retention: { lastSuccessfulPerName: 0, tags: [] },
      log: process.env.KILN_TEST_LOG ? createLogger({ name: 't', level: 'debug' }) : silentLogger(), ...extra,
    });
    const c = { coordinator, database, dataDir, admin: createAdminClient(coordinator.url, coordinator.adminToken), stop: () => coordinator.stop() };
    started.push(c);
    return c;
  }

  const narinfo = async (on: TestCoordinator, hashPart: string) => {
    const res = await fetch(`${on.coordinator.url}/${hashPart}.narinfo`);
    return { status: res.status, cacheControl: res.headers.get('cache-control'), text: await res.text() };
  };

  async function buildOne(on: TestCoordinator): Promise<string> {
    const maker = new DerivationMaker();
    const drv = maker.make({ name: `lib-${randomUUID().slice(0, 8)}` });
    const agent = await connectTestAgent(on);
    try {
      // Replicas share the hook deliveries: any of them may publish it.
      await buildByHand(on, agent, maker, drv, { publishers: started });
    } finally {
      await agent.close();
    }
    return parseStorePath(drv.outputs.get('out')!).hashPart;
  }

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await start();
  });
  afterAll(async () => {
    for (const c of started.reverse()) await c.stop().catch(() => undefined);
    await database?.drop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('a committed path is served with max-age cache.ttl, a missing one is a 404 with negativeTtl', async () => {
    const hashPart = await buildOne(t);
    const hit = await narinfo(t, hashPart);
    expect(hit.status).toBe(200);
    expect(hit.text).toContain(`StorePath: `);
    expect(hit.text).toContain(hashPart);
    expect(hit.cacheControl).toBe(`public, max-age=${TTLS.found}`);
    // Served again (from memory this time): the same text.
    expect((await narinfo(t, hashPart)).text).toBe(hit.text);
    const miss = await narinfo(t, '0'.repeat(32));
    expect(miss.status).toBe(404);
    expect(miss.cacheControl).toBe(`public, max-age=${TTLS.missing}`);
  });

  test('a missing hash part is answered 404 from the index, with the database unreachable to the request', async () => {
    // The route answers a miss from the index before any query: with the database
    // closed under it a query would fail (a 500), the index still says 404.
    // On PostgreSQL the path is built through t (whose hook runner may take the publish),
    // and the other coordinator's index loads it at start.
    const other = kind === 'postgres' ? undefined : await start();
    const hashPart = await buildOne(other ?? t);
    const onOther = other ?? (await start());
    expect((await narinfo(onOther, hashPart)).status).toBe(200);
    await onOther.coordinator.database.close();
    const miss = await narinfo(onOther, 'z'.repeat(32));
    expect(miss.status).toBe(404);
    expect(miss.cacheControl).toBe(`public, max-age=${TTLS.missing}`);
  });

  test('after garbage collection a path is a 404', async () => {
    const hashPart = await buildOne(t);
    expect((await narinfo(t, hashPart)).status).toBe(200);
    const gc = await t.admin.collectGarbage({ dryRun: false });
    expect(gc.paths.length).toBeGreaterThan(0);
    const after = await narinfo(t, hashPart);
    expect(after.status).toBe(404);
    expect(after.cacheControl).toBe(`public, max-age=${TTLS.missing}`);
  });

  if (kind === 'postgres') {
    test('a path committed through one coordinator is served by another on the same database', async () => {
      const a = await start();
      const b = await start();
      const hashPart = await buildOne(a);
      expect((await narinfo(a, hashPart)).status).toBe(200);
      await waitUntil(async () => (await narinfo(b, hashPart)).status === 200, 10_000, async () => `b answers ${(await narinfo(b, hashPart)).status}`, 50);
      expect((await narinfo(b, hashPart)).text).toBe((await narinfo(a, hashPart)).text);
    });
  }
});
