// The blob store's behaviour, one suite run on the filesystem and on a real S3-compatible
// server started here (Debian's Ceph radosgw on a memstore OSD: it implements what
// resuming needs, ListParts, ListMultipartUploads and AbortMultipartUpload, which s3rver
// does not). A staged upload is cut half way by killing the process writing it (a child
// running the built store from dist/: `npm run build` first) and then resumed from the
// parts the store kept.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobStoreError, MIN_PART_SIZE, type BlobStore } from '../../src/storage/blob-store.js';
import { openBlobStore, parseBlobStoreLocation } from '../../src/storage/blob-store-url.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { S3BlobStore } from '../../src/storage/s3-blob-store.js';
import { startRadosgw, type Radosgw } from '../helpers/radosgw.js';

const DIST = resolve('dist/src/storage/blob-store-url.js');
const BUCKET = 'kiln-blobs';
const PART = MIN_PART_SIZE;

let rgw: Radosgw;
const work = mkdtempSync(join(tmpdir(), 'kiln-blob-test-'));

beforeAll(async () => {
  rgw = await startRadosgw();
  const admin = new S3Client({
    endpoint: rgw.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
  });
  await admin.send(new CreateBucketCommand({ Bucket: BUCKET }));
  admin.destroy();
}, 90_000);

afterAll(async () => {
  await rgw?.stop();
  rmSync(work, { recursive: true, force: true });
});

interface Backend {
  name: string;
  /** The address a child process opens the store with (--nar-store's syntax). */
  location: string;
  /** Environment the child needs (S3 credentials as AWS_* variables). */
  env: NodeJS.ProcessEnv;
  open(): Promise<BlobStore>;
}

function s3Backend(): Backend {
  const prefix = `run-${randomUUID()}`;
  const location = `s3://${BUCKET}/${prefix}?endpoint=${encodeURIComponent(rgw.endpoint)}&region=us-east-1`;
  return {
    name: 's3',
    location,
    env: { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey },
    open: async () =>
      openBlobStore(parseBlobStoreLocation(location), { credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } }),
  };
}

function fsBackend(): Backend {
  const dir = mkdtempSync(join(work, 'fs-'));
  return { name: 'fs', location: dir, env: {}, open: () => FsBlobStore.open(dir) };
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function rejection(p: Promise<unknown>): Promise<BlobStoreError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof BlobStoreError)) throw new Error(`expected a BlobStoreError, got ${String(err)}`);
  return err;
}

/**
 * Runs a writer process that stages `file` under `key` and stops once it has written
 * `stopAfter` bytes (some of them still buffered, not a whole part); resolves with the
 * size it had staged, once the process is killed.
 */
async function writeThenDie(backend: Backend, key: string, file: string, stopAfter: number): Promise<number> {
  const script = `
    import { createReadStream } from 'node:fs';
    const { openBlobStore, parseBlobStoreLocation } = await import(${JSON.stringify(DIST)});
    const [location, key, file, partSize, stopAfter] = process.argv.slice(1);
    const store = await openBlobStore(parseBlobStoreLocation(location));
    const staged = await store.startStaged(key, { partSize: Number(partSize) });
    let written = 0;
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
      await staged.write(chunk);
      written += chunk.length;
      if (written >= Number(stopAfter)) break;
    }
    process.stdout.write('staged ' + staged.size + '\\n');
    setInterval(() => {}, 1000); // waits to be killed, mid-upload
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, backend.location, key, file, String(PART), String(stopAfter)], {
    env: { ...process.env, ...backend.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const staged = await new Promise<number>((res, rej) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /staged (\d+)\n/.exec(out);
      if (m) res(Number(m[1]));
    });
    child.once('exit', (code) => rej(new Error(`the writer exited (${code}) before it had staged: ${err}`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  return staged;
}

describe.each([
  ['the filesystem', fsBackend],
  ['S3 (radosgw)', s3Backend],
])('the blob store on %s', (_name, makeBackend) => {
  let backend: Backend;
  let store: BlobStore;

  beforeAll(async () => {
    backend = makeBackend();
    store = await backend.open();
  });

  afterAll(() => store?.close());

  test('puts a blob from a stream and reads it whole and by ranges', async () => {
    const bytes = randomBytes(PART + 123_457); // past one part: S3 takes it as a multipart upload
    await store.put('nar/streamed.nar', chunked(bytes, 64 * 1024));
    expect(sha(await bytesOf(await store.read('nar/streamed.nar')))).toBe(sha(bytes));
    expect(await bytesOf(await store.read('nar/streamed.nar', { start: 0, end: 0 }))).toEqual(bytes.subarray(0, 1));
    expect(await bytesOf(await store.read('nar/streamed.nar', { start: 1000, end: 200_999 }))).toEqual(bytes.subarray(1000, 201_000));
    const last = bytes.length - 1;
    expect(await bytesOf(await store.read('nar/streamed.nar', { start: last - 9, end: last }))).toEqual(bytes.subarray(last - 9));

    const small = randomBytes(777);
    await store.put('nar/small.nar', small);
    expect(await bytesOf(await store.read('nar/small.nar'))).toEqual(small);
    await store.put('nar/empty.nar', Buffer.alloc(0));
    expect((await bytesOf(await store.read('nar/empty.nar'))).length).toBe(0);
    // A put over an existing key replaces it whole.
    await store.put('nar/small.nar', chunked(bytes.subarray(0, 10), 3));
    expect(await bytesOf(await store.read('nar/small.nar'))).toEqual(bytes.subarray(0, 10));
  });

  test('refuses a range that starts past the end as out_of_range', async () => {
    await store.put('nar/ranged.nar', Buffer.from('0123456789'));
    expect((await rejection(store.read('nar/ranged.nar', { start: 10, end: 20 }))).kind).toBe('out_of_range');
  });

  test('stats a blob: its size and when it was written; none for a missing key', async () => {
    const before = Date.now();
    await store.put('nar/stat.nar', randomBytes(4096));
    const info = await store.stat('nar/stat.nar');
    expect(info?.size).toBe(4096);
    // S3 keeps whole seconds.
    expect(info!.modifiedMs).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 1000);
    expect(await store.stat('nar/never-written.nar')).toBeUndefined();
  });

  test('a staged upload whose writer process died half way resumes from the parts it left and completes', async () => {
    const bytes = randomBytes(3 * PART + 654_321);
    const file = join(work, `${backend.name}-upload.bin`);
    writeFileSync(file, bytes);
    const key = 'nar/resumed.nar';
    // The writer dies with two whole parts stored and half of the third in its buffer.
    const staged = await writeThenDie(backend, key, file, 2 * PART + PART / 2);
    expect(staged).toBe(2 * PART);
    expect(await store.stat(key)).toBeUndefined(); // nothing half written is visible

    const [open] = await collect(store.listStaged('nar/'));
    expect(open?.key).toBe(key);
    const resumed = await store.resumeStaged(key);
    expect(resumed).toBeDefined();
    expect(resumed!.size).toBe(2 * PART);
    expect(resumed!.parts).toEqual([PART, PART]);
    for await (const chunk of createReadStream(file, { start: resumed!.size, highWaterMark: 1 << 20 })) await resumed!.write(chunk as Buffer);
    await resumed!.complete();

    expect((await store.stat(key))?.size).toBe(bytes.length);
    expect(sha(await bytesOf(await store.read(key)))).toBe(sha(bytes));
    expect(await collect(store.listStaged(key))).toEqual([]);
  });

  test('a writer whose stream broke lets the upload go; the next writer resumes it', async () => {
    const bytes = randomBytes(2 * PART + 1000);
    const key = 'nar/released.nar';
    const first = await store.startStaged(key, { partSize: PART });
    await first.write(bytes.subarray(0, PART + 500));
    // Held by a live writer: a second one is refused, not let interleave.
    expect((await rejection(store.resumeStaged(key))).kind).toBe('in_use');
    expect((await rejection(store.startStaged(key))).kind).toBe('in_use');
    await first.release();
    const second = await store.resumeStaged(key);
    expect(second!.size).toBe(PART);
    await second!.write(bytes.subarray(PART));
    await second!.complete();
    expect(sha(await bytesOf(await store.read(key)))).toBe(sha(bytes));
  });

  test('a fresh start drops what an earlier upload of the key staged', async () => {
    const key = 'nar/restarted.nar';
    const first = await store.startStaged(key, { partSize: PART });
    await first.write(randomBytes(PART));
    await first.release();
    const second = await store.startStaged(key);
    expect(second.size).toBe(0);
    const bytes = randomBytes(1234);
    await second.write(bytes);
    await second.complete();
    expect(await bytesOf(await store.read(key))).toEqual(bytes);
    expect(await collect(store.listStaged(key))).toEqual([]);
  });

  test('an aborted upload leaves nothing: no blob, no parts, nothing to resume', async () => {
    const key = 'nar/aborted.nar';
    const staged = await store.startStaged(key, { partSize: PART });
    await staged.write(randomBytes(PART + 10));
    expect(staged.size).toBe(PART);
    await staged.abort();
    expect(await store.stat(key)).toBeUndefined();
    expect(await collect(store.listStaged(key))).toEqual([]);
    expect(await store.resumeStaged(key)).toBeUndefined();
    // The key is free again.
    const again = await store.startStaged(key);
    await again.abort();
  });

  test('deletes a blob; deleting a missing one is no error; reading it is not_found', async () => {
    await store.put('nar/deleted.nar', randomBytes(100));
    await store.delete('nar/deleted.nar');
    expect(await store.stat('nar/deleted.nar')).toBeUndefined();
    const err = await rejection(store.read('nar/deleted.nar'));
    expect(err.kind).toBe('not_found');
    expect(err.message).toContain('nar/deleted.nar');
    await store.delete('nar/deleted.nar');
  });

  test('lists blobs by prefix in key order, for garbage collection and orphan sweeps', async () => {
    const ns = `gc-${randomUUID().slice(0, 8)}`;
    const keys = [`${ns}/nar/b.nar`, `${ns}/nar/a.nar.zst`, `${ns}/nar/a.nar`, `${ns}/log/x.log`, `${ns}/narinfo`];
    for (const [i, key] of keys.entries()) await store.put(key, Buffer.alloc(i + 1, 1));
    const staged = await store.startStaged(`${ns}/nar/c.nar`);
    await staged.release();

    expect((await collect(store.list(`${ns}/nar/`))).map((b) => b.key)).toEqual([`${ns}/nar/a.nar`, `${ns}/nar/a.nar.zst`, `${ns}/nar/b.nar`]);
    expect((await collect(store.list(`${ns}/nar/a`))).map((b) => [b.key, b.size])).toEqual([
      [`${ns}/nar/a.nar`, 3],
      [`${ns}/nar/a.nar.zst`, 2],
    ]);
    expect((await collect(store.list(`${ns}/nar`))).map((b) => b.key)).toEqual([`${ns}/nar/a.nar`, `${ns}/nar/a.nar.zst`, `${ns}/nar/b.nar`, `${ns}/narinfo`]);
    expect((await collect(store.list(`${ns}/`))).length).toBe(5);
    expect(await collect(store.list(`${ns}/none/`))).toEqual([]);
    // An orphan sweep finds the upload left unfinished, and aborts it.
    const open = await collect(store.listStaged(`${ns}/`));
    expect(open.map((s) => s.key)).toEqual([`${ns}/nar/c.nar`]);
    expect(open[0]!.startedMs).toBeGreaterThan(Date.now() - 10 * 60_000);
    await (await store.resumeStaged(open[0]!.key))!.abort();
    expect(await collect(store.listStaged(`${ns}/`))).toEqual([]);
    // A gc pass: every blob listed is deleted, then none is left.
    for (const b of await collect(store.list(`${ns}/`))) await store.delete(b.key);
    expect(await collect(store.list(`${ns}/`))).toEqual([]);
  });

  test('refuses keys that could escape the store', async () => {
    for (const bad of ['../x', '/abs', 'a//b', 'nar/.hidden', '', 'a/b/']) {
      await expect(store.put(bad, Buffer.from('x'))).rejects.toThrow(/bad blob key/);
    }
  });
});

describe('S3 specifics (radosgw)', () => {
  test('a presigned URL serves the blob, whole and by range, with no credentials', async () => {
    const store = (await s3Backend().open()) as S3BlobStore;
    const bytes = randomBytes(10_000);
    await store.put('nar/presigned.nar', bytes);
    const url = await store.readUrl('nar/presigned.nar', 60);
    expect(url).toMatch(/X-Amz-Signature=/);
    const whole = await fetch(url);
    expect(Buffer.from(await whole.arrayBuffer())).toEqual(bytes);
    const part = await fetch(url, { headers: { range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(bytes.subarray(100, 200));
    store.close();
  });

  test('the filesystem has no URL of its own', async () => {
    const store = await fsBackend().open();
    expect(await store.readUrl('nar/x.nar', 60)).toBeUndefined();
  });

  test('a gateway that is down is unavailable, and the store works again once it is back', async () => {
    const store = new S3BlobStore({
      ...(parseBlobStoreLocation(`s3://${BUCKET}/down?endpoint=${rgw.endpoint}`) as { kind: 's3' } & ConstructorParameters<typeof S3BlobStore>[0]),
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
      maxAttempts: 1,
    });
    await store.put('nar/before.nar', Buffer.from('before'));
    await rgw.halt();
    try {
      for (const call of [store.stat('nar/before.nar'), store.read('nar/before.nar'), store.put('nar/during.nar', Buffer.from('x')), store.startStaged('nar/during.nar')]) {
        const err = await rejection(call);
        expect(err.kind).toBe('unavailable');
        expect(err.message).toContain(`s3://${BUCKET}/down/`);
      }
    } finally {
      await rgw.resume();
    }
    expect((await bytesOf(await store.read('nar/before.nar'))).toString()).toBe('before');
    store.close();
  });

  test('a missing bucket or a wrong secret is misconfigured, not unavailable', async () => {
    const location = parseBlobStoreLocation(`s3://no-such-bucket/x?endpoint=${rgw.endpoint}`) as { kind: 's3' } & ConstructorParameters<typeof S3BlobStore>[0];
    const noBucket = new S3BlobStore({ ...location, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } });
    expect((await rejection(noBucket.put('nar/x.nar', Buffer.from('x')))).kind).toBe('misconfigured');
    noBucket.close();
    const wrong = new S3BlobStore({ ...location, bucket: BUCKET, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: 'not-the-secret' } });
    expect((await rejection(wrong.put('nar/x.nar', Buffer.from('x')))).kind).toBe('misconfigured');
    wrong.close();
  });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
