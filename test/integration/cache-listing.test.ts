// AdminService.ListCachePaths on both databases, through a real coordinator: the paths the
// cache serves in pages by hash part, each with a version that changes with its narinfo
// and only then; paths not signed by the current keys (404s) are not listed; bad page
// tokens and sizes are refused with a message.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { Code, ConnectError } from '@connectrpc/connect';
import { eq } from 'drizzle-orm';
import type { CachePath } from '../../gen/kiln/v1/admin_pb.js';
import { storePaths } from '../../src/db/schema.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { buildByHand, DerivationMaker } from '../helpers/hand-builds.js';

describe.each(DATABASE_KINDS)('listing the cache on %s', (kind) => {
  let t: TestCoordinator;
  let agent: TestAgentStream;
  const maker = new DerivationMaker();
  const nonce = randomUUID().slice(0, 8);

  async function listAll(pageSize: number): Promise<{ paths: CachePath[]; pages: number }> {
    const paths: CachePath[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await t.admin.listCachePaths({ pageSize, pageToken });
      expect(page.paths.length).toBeLessThanOrEqual(pageSize);
      paths.push(...page.paths);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    return { paths, pages };
  }

  beforeAll(async () => {
    t = await startTestCoordinator(kind, { submitMissingInputs: false, hookPollMs: 100 });
    agent = await connectTestAgent(t);
    for (const n of [1, 2, 3]) await buildByHand(t, agent, maker, maker.make({ name: `listed-${nonce}-${n}` }));
  }, 120_000);
  afterAll(async () => {
    await agent?.close();
    await t?.stop();
  });

  test('pages through every served path in ascending hash-part order, whatever the page size', async () => {
    const rows = await t.coordinator.database.db.select({ path: storePaths.path, hashPart: storePaths.hashPart }).from(storePaths);
    // Three outputs and their three .drv files.
    expect(rows).toHaveLength(6);
    const whole = await listAll(1000);
    expect(whole.pages).toBe(1);
    expect(whole.paths.map((p) => [p.hashPart, p.storePath])).toEqual(rows.map((r) => [r.hashPart, r.path]).sort(([a], [b]) => (a! < b! ? -1 : 1)));
    const byOne = await listAll(1);
    expect(byOne.pages).toBe(6);
    expect(byOne.paths).toEqual(whole.paths);
    expect((await listAll(4)).paths).toEqual(whole.paths);
    expect(new Set(whole.paths.map((p) => p.version)).size).toBe(6);
  });

  test('a version changes when the narinfo does, and a path not signed by the current keys is not listed', async () => {
    const db = t.coordinator.database.db;
    const [first, second] = (await listAll(100)).paths;
    // Another signature, as after a key change: the narinfo served would differ.
    await db.update(storePaths).set({ guixSignature: 'changed' }).where(eq(storePaths.path, first!.storePath));
    // Signed by no current key: the cache answers 404 for it.
    await db.update(storePaths).set({ signatureKey: 'other-keys' }).where(eq(storePaths.path, second!.storePath));
    const now = (await listAll(100)).paths;
    expect(now.find((p) => p.storePath === first!.storePath)!.version).not.toBe(first!.version);
    expect(now.map((p) => p.storePath)).not.toContain(second!.storePath);
    expect((await fetch(`${t.coordinator.url}/${second!.hashPart}.narinfo`)).status).toBe(404);
    expect(now).toHaveLength(5);
    // A page of one that covers the unsigned path lists nothing, and the next goes on.
    const byOne = await listAll(1);
    expect(byOne.paths).toEqual(now);
    expect(byOne.pages).toBe(6);
  });

  test.each([
    ['a page token it did not hand out', { pageToken: 'not-a-hash-part' }, /page_token is not one this coordinator handed out/],
    ['a page size over the limit', { pageSize: 10_001 }, /page_size must be from 0 .* to 10000, not 10001/],
    ['a negative page size', { pageSize: -1 }, /page_size must be from 0/],
  ])('refuses %s with INVALID_ARGUMENT', async (_what, request, message) => {
    const err = await t.admin.listCachePaths(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toMatch(message);
  });
});
