// NARs in S3 through the whole path: a coordinator with `narStore: s3://…` on a real
// radosgw (test/helpers/radosgw.ts), a real `kiln agent run` with the nix builder that
// builds a small and a large (multipart) output and uploads them the agents' way, and a
// fresh Nix store that substitutes both from kiln with signatures required: streamed by
// kiln from S3, or redirected to S3's presigned URL. Nothing but staging touches the
// coordinator's NAR directory.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { inArray } from 'drizzle-orm';
import { narFiles, storePaths } from '../../src/db/schema.js';
import { parseBlobStoreLocation } from '../../src/storage/blob-store-url.js';
import { S3BlobStore } from '../../src/storage/s3-blob-store.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { agentLogs, substituteFromCache } from '../helpers/build-loop.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { closureOf, shDrv } from '../helpers/derivations.js';
import { instantiate } from '../helpers/nix.js';
import { startRadosgw, type Radosgw } from '../helpers/radosgw.js';
import { waitForBuilds, waitUntil } from '../helpers/wait.js';

const BUCKET = 'kiln-nars';
const WAIT_MS = 180_000;

let rgw: Radosgw;
let work: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'kiln-s3-e2e-'));
  rgw = await startRadosgw();
  const admin = new S3Client({ endpoint: rgw.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } });
  await admin.send(new CreateBucketCommand({ Bucket: BUCKET }));
  admin.destroy();
}, 90_000);

afterAll(async () => {
  await rgw?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Every file under a directory, recursively (the coordinator's NAR directory must hold none once done). */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(dir, f)).isFile());
}

describe.each([
  ['streamed by kiln', 0],
  ['redirected to a presigned URL', 300],
])('NARs in S3, %s', (_how, redirectSeconds) => {
  let t: TestCoordinator;
  let agent: AgentProcess;
  let narDir: string;
  const prefix = `farm-${randomUUID().slice(0, 8)}`;
  const credentials = () => ({ accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey });
  const location = () => parseBlobStoreLocation(`s3://${BUCKET}/${prefix}?endpoint=${rgw.endpoint}&region=us-east-1`);

  beforeAll(async () => {
    narDir = mkdtempSync(join(work, 'staging-'));
    t = await startTestCoordinator('pglite', {
      narDir,
      narStore: location(),
      narStoreCredentials: credentials(),
      narRedirectSeconds: redirectSeconds,
      submitMissingInputs: false,
      // zstd too: the publish hook writes those aside and adopts them into the store.
      compressions: [{ name: 'lz4' }, { name: 'zstd', level: 3 }],
    });
    const { agent: a } = await t.admin.createAgent({ name: 'agent-s3' });
    const { password } = await t.admin.createAgentPassword({ agentId: a!.id });
    agent = startAgentProcess({ coordinatorUrl: t.coordinator.url, id: a!.id, password, store: join(work, `agent-${prefix}`), builder: 'nix' });
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
  });

  test('an output built and uploaded by a real agent lands in S3, and real Nix substitutes it from kiln', async () => {
    const nonce = randomUUID().slice(0, 8);
    // The large one: 12 MB of noise, past S3's 5 MiB part (a multipart upload) even as LZ4.
    const [drv] = instantiate(`let small = ${shDrv(`s3-small-${nonce}`, `echo small-${nonce} > $out`)}; in ${shDrv(
      `s3-large-${nonce}`,
      '{ cat ${small}; head -c 12000000 /dev/urandom; } > $out',
    )}`);
    const { build } = await t.admin.submitBuild({ derivationPath: drv!, derivations: closureOf(drv!) });
    const closure = closureOf(drv!).map((d) => d.path);
    const smallDrv = closure.find((p) => p.includes('s3-small-'))!;
    const { build: smallBuild } = await t.admin.submitBuild({ derivationPath: smallDrv, derivations: closureOf(smallDrv) });
    const state = async (id: string) => (await t.admin.getBuild({ id })).build!.state;
    await waitForBuilds(
      t.coordinator,
      async () => (await state(build!.id)) === BuildState.SUCCEEDED || (await state(build!.id)) === BuildState.FAILED,
      WAIT_MS,
      async () => `build ${await state(build!.id)}, small ${await state(smallBuild!.id)}\n${agentLogs([agent])}`,
    );
    expect(await state(build!.id)).toBe(BuildState.SUCCEEDED);
    const outputs = [(await t.admin.getBuild({ id: smallBuild!.id })).build!.outputs[0]!.path, (await t.admin.getBuild({ id: build!.id })).build!.outputs[0]!.path];

    // Published: both outputs in zstd too (LZ4, as uploaded, is the store_paths row's file).
    const zstdFiles = async () => t.coordinator.database.db.select().from(narFiles).where(inArray(narFiles.path, outputs));
    await waitUntil(async () => (await zstdFiles()).length === 2, WAIT_MS, async () => `zstd files: ${JSON.stringify(await zstdFiles())}`);

    // Every NAR file the cache records is an object in the bucket, of its recorded size;
    // the coordinator's directory keeps none (its staging is emptied once committed).
    const store = new S3BlobStore({ ...(location() as Extract<ReturnType<typeof location>, { kind: 's3' }>), credentials: credentials() });
    try {
      const objects = new Map<string, number>();
      for await (const b of store.list('nar/')) objects.set(b.key.slice('nar/'.length), b.size);
      const uploaded = await t.coordinator.database.db.select().from(storePaths).where(inArray(storePaths.path, outputs));
      const recorded = [...uploaded, ...(await zstdFiles())].map((f) => ({ path: f.path, fileName: f.fileName!, fileSize: Number(f.fileSize) }));
      expect(recorded).toHaveLength(4);
      for (const f of recorded) expect([f.fileName, objects.get(f.fileName)]).toEqual([f.fileName, f.fileSize]);
      const large = uploaded.map((f) => ({ fileName: f.fileName!, fileSize: Number(f.fileSize), path: f.path })).find((f) => f.path === outputs[1])!;
      expect(large.fileSize).toBeGreaterThan(5 * 1024 * 1024);
      expect(filesUnder(narDir)).toEqual([]);

      // Served: streamed from S3 by kiln, with ranges, or redirected to S3 itself.
      const res = await fetch(`${t.coordinator.url}/nar/${large.fileName}`, { redirect: 'manual', headers: { range: 'bytes=0-99' } });
      if (redirectSeconds > 0) {
        expect(res.status).toBe(302);
        expect(res.headers.get('location')).toMatch(new RegExp(`^${rgw.endpoint}/${BUCKET}/${prefix}/nar/${large.fileName}\\?.*X-Amz-Expires=${redirectSeconds}`));
      } else {
        expect(res.status).toBe(206);
        expect(res.headers.get('content-range')).toBe(`bytes 0-99/${large.fileSize}`);
        expect((await res.arrayBuffer()).byteLength).toBe(100);
      }
    } finally {
      store.close();
    }

    // A fresh Nix store substitutes both from kiln with signatures required, and every
    // NAR hash it computes is the one recorded.
    const client = await substituteFromCache(t, join(work, `client-${prefix}`), outputs);
    expect(readFileSync(join(client, outputs[1]!)).subarray(0, `small-${nonce}\n`.length).toString()).toBe(`small-${nonce}\n`);
    const rows = await t.coordinator.database.db.select().from(storePaths);
    expect(rows.map((r) => r.path)).toEqual(expect.arrayContaining(outputs));
  }, WAIT_MS + 60_000);
});
