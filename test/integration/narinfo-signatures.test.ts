// Narinfos are signed ahead of requests, through the real coordinator on both databases:
// a path is signed as it is committed, a request only reads the stored signatures (a
// path without current ones is a miss), and the backfill at start signs the paths of an
// older database and re-signs every path after a key change.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq, sql } from 'drizzle-orm';
import { createAdminClient } from '../../src/client/admin-client.js';
import { startCoordinator, type CoordinatorOptions } from '../../src/coordinator/coordinator.js';
import { storePaths } from '../../src/db/schema.js';
import { createLogger, silentLogger } from '../../src/logger.js';
import { generateGuixKey, parseGuixPublicKey, renderGuixSecretKey, type GuixPublicKey } from '../../src/store/guix-key.js';
import { verifyNarInfoSignature } from '../../src/store/guix-signature.js';
import { parseNarInfo } from '../../src/store/narinfo.js';
import { countValidSignatures, parseNixPublicKey } from '../../src/store/nix-signature.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { connectTestAgent } from '../helpers/agent-stream.js';
import type { TestCoordinator } from '../helpers/coordinator.js';
import { createTestDatabase, DATABASE_KINDS, type TestDatabase } from '../helpers/databases.js';
import { buildByHand, DerivationMaker } from '../helpers/hand-builds.js';

describe.each(DATABASE_KINDS)('narinfo signatures on %s', (kind) => {
  let database: TestDatabase;
  let dataDir: string;
  let t: TestCoordinator | undefined;
  const maker = new DerivationMaker();
  const lib = maker.make({ name: `lib-${randomUUID().slice(0, 8)}` });
  const path = lib.outputs.get('out')!;

  /** A coordinator on the suite's database and data directory, which outlive it. */
  async function start(extra: Partial<CoordinatorOptions> = {}): Promise<TestCoordinator> {
    const options = kind === 'pglite' ? { dataDir: join(dataDir, 'pglite') } : database.options;
    const coordinator = await startCoordinator({ port: 0, dataDir, database: options, log: process.env.KILN_TEST_LOG ? createLogger({ name: 't', level: 'debug' }) : silentLogger(), submitMissingInputs: false, hookPollMs: 100, ...extra });
    return { coordinator, database, dataDir, admin: createAdminClient(coordinator.url, coordinator.adminToken), stop: () => coordinator.stop() };
  }

  const narinfo = async (hashPart: string, method = 'GET') => {
    const res = await fetch(`${t!.coordinator.url}/${hashPart}.narinfo`, { method });
    return { status: res.status, text: await res.text() };
  };

  /** kiln_narinfo_signatures_total as /metrics says it. */
  const signaturesMade = async () => {
    const text = await (await fetch(`${t!.coordinator.url}/metrics`)).text();
    return Number(/^kiln_narinfo_signatures_total (\d+)$/m.exec(text)![1]);
  };

  const rows = () => t!.coordinator.database.db.select().from(storePaths);
  const guixKey = (): GuixPublicKey => parseGuixPublicKey(readFileSync(join(dataDir, 'signing-key.pub')));

  /** The narinfo is served, and both its signatures verify under the given keys. */
  async function expectSigned(nixPublicKey: string, guix: GuixPublicKey) {
    const { status, text } = await narinfo(parseStorePath(path).hashPart);
    expect(status).toBe(200);
    expect(countValidSignatures(parseNarInfo(text), [parseNixPublicKey(nixPublicKey)])).toBe(1);
    expect(verifyNarInfoSignature(text, [guix])).toBe('valid-signature');
    return text;
  }

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    dataDir = mkdtempSync(join(tmpdir(), 'kiln-signatures-'));
    t = await start();
    // The Guix public key file is written by `guix archive`-style generation beside the secret.
    writeFileSync(join(dataDir, 'signing-key.pub'), Buffer.from(await (await fetch(`${t.coordinator.url}/signing-key.pub`)).arrayBuffer()));
    const agent = await connectTestAgent(t);
    try {
      await buildByHand(t, agent, maker, lib);
    } finally {
      await agent.close();
    }
  });
  afterAll(async () => {
    await t?.stop();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  test('paths are signed when committed, and narinfo requests (hits, misses, HEAD) make no signature', async () => {
    const stored = await rows();
    expect(stored.length).toBeGreaterThanOrEqual(2); // the output and the .drv
    for (const row of stored) expect([row.signatureKey, row.nixSignature !== null, row.guixSignature !== null]).toEqual([stored[0]!.signatureKey, true, true]);
    const before = await signaturesMade();
    const text = await expectSigned(t!.coordinator.nixPublicKey, guixKey());
    for (const row of stored) expect((await narinfo(row.hashPart)).status).toBe(200);
    expect((await narinfo(parseStorePath(path).hashPart, 'HEAD')).status).toBe(200);
    expect((await narinfo('0'.repeat(32))).status).toBe(404);
    expect(await expectSigned(t!.coordinator.nixPublicKey, guixKey())).toBe(text);
    expect(await signaturesMade()).toBe(before);
  });

  test('a path stored without signatures is a miss, not signed on request, and the backfill at start signs it', async () => {
    const db = t!.coordinator.database.db;
    // As a database from before stored signatures has it.
    await db.update(storePaths).set({ nixSignature: null, guixSignature: null, signatureKey: null, narinfo: null, narinfoSigner: null });
    const before = await signaturesMade();
    expect((await narinfo(parseStorePath(path).hashPart)).status).toBe(404);
    expect(await signaturesMade()).toBe(before);

    await t!.stop();
    t = await start();
    const count = (await rows()).length;
    expect(await t.coordinator.signaturesBackfilled).toBe(count);
    expect((await rows()).every((r) => r.signatureKey !== null)).toBe(true);
    await expectSigned(t.coordinator.nixPublicKey, guixKey());
    // Nothing left to sign: the next start signs nothing.
    await t.stop();
    t = await start();
    expect(await t.coordinator.signaturesBackfilled).toBe(0);
  });

  test('after a key change every stored path is signed again, under the new keys only', async () => {
    const oldGuix = guixKey();
    const oldNix = t!.coordinator.nixPublicKey;
    const oldSigned = await expectSigned(oldNix, oldGuix);
    await t!.stop();
    const newKey = generateGuixKey();
    const keyFile = join(dataDir, 'rotated-signing-key.sec');
    writeFileSync(keyFile, renderGuixSecretKey(newKey));
    t = await start({ guixKeyFile: keyFile });
    expect(await t.coordinator.signaturesBackfilled).toBe((await rows()).length);
    const text = await expectSigned(oldNix, newKey.publicKey);
    expect(text).not.toBe(oldSigned);
    expect(verifyNarInfoSignature(text, [oldGuix])).toBe('unauthorized-key');
    const keysUsed = await t.coordinator.database.db.select({ key: sql<string>`distinct ${storePaths.signatureKey}` }).from(storePaths);
    expect(keysUsed).toHaveLength(1);
    expect(keysUsed[0]!.key).not.toBe((await t.coordinator.database.db.select().from(storePaths).where(eq(storePaths.path, path)))[0]!.narinfoSigner);
  });
});
