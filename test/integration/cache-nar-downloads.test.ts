// NAR downloads from the binary cache over a real socket: a file several read chunks
// long comes back whole and byte for byte, byte ranges (open, closed, suffix) as 206
// with the right Content-Range, an unsatisfiable one as 416, HEAD with the length and no
// body, a missing file as 404, many downloads on one kept-alive connection, and a file
// removed from disk is a 404 at once though its descriptor was kept open, and a download
// its client cuts off leaves that descriptor good for the next.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { request, Agent } from 'node:http';
import { appendFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeBase32 } from '../../src/store/base32.js';
import { READ_CHUNK_BYTES } from '../../src/storage/nar-storage.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';

describe('NAR downloads', () => {
  let t: TestCoordinator;
  // Past two read chunks and not a multiple of one: the last read is a short one.
  const content = randomBytes(2 * READ_CHUNK_BYTES + 12_345);
  const small = randomBytes(100);
  const name = `${encodeBase32(randomBytes(32))}.nar.zst`;
  const smallName = `${encodeBase32(randomBytes(32))}.nar`;

  beforeAll(async () => {
    // One database is enough: serving a NAR reads no row.
    t = await startTestCoordinator('postgres');
    writeFileSync(join(t.dataDir, 'nars', 'nar', name), content);
    writeFileSync(join(t.dataDir, 'nars', 'nar', smallName), small);
  });
  afterAll(async () => {
    await t?.stop();
  });

  const get = async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
    const res = await fetch(`${t.coordinator.url}${path}`, { headers, method });
    return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
  };

  test('a NAR of several read chunks is served whole, immutable, with its length', async () => {
    const res = await get(`/nar/${name}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(content.length));
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.body.equals(content)).toBe(true);
  });

  test('byte ranges across a chunk boundary, to the end and from the end are 206 with their bytes', async () => {
    const from = READ_CHUNK_BYTES - 10;
    const closed = await get(`/nar/${name}`, { range: `bytes=${from}-${from + 99}` });
    expect(closed.status).toBe(206);
    expect(closed.headers.get('content-range')).toBe(`bytes ${from}-${from + 99}/${content.length}`);
    expect(closed.body.equals(content.subarray(from, from + 100))).toBe(true);

    const open = await get(`/nar/${name}`, { range: `bytes=${content.length - 5}-` });
    expect(open.status).toBe(206);
    expect(open.body.equals(content.subarray(content.length - 5))).toBe(true);

    const suffix = await get(`/nar/${name}`, { range: 'bytes=-7' });
    expect(suffix.status).toBe(206);
    expect(suffix.headers.get('content-range')).toBe(`bytes ${content.length - 7}-${content.length - 1}/${content.length}`);
    expect(suffix.body.equals(content.subarray(content.length - 7))).toBe(true);
  });

  test('a range past the end is 416 naming the size', async () => {
    const res = await get(`/nar/${name}`, { range: `bytes=${content.length}-` });
    expect(res.status).toBe(416);
    expect(res.headers.get('content-range')).toBe(`bytes */${content.length}`);
    expect(res.body.length).toBe(0);
  });

  test('HEAD says the length and sends no body; a missing NAR is 404', async () => {
    const head = await get(`/nar/${name}`, {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(content.length));
    expect(head.body.length).toBe(0);
    const missing = await get(`/nar/${encodeBase32(randomBytes(32))}.nar.zst`);
    expect(missing.status).toBe(404);
  });

  test('many downloads follow one another on one kept-alive HTTP/1.1 connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    try {
      for (let i = 0; i < 20; i++) {
        const body = await new Promise<Buffer>((resolve, reject) => {
          const req = request(`${t.coordinator.url}/nar/${i % 2 ? name : smallName}`, { agent }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve(Buffer.concat(chunks)));
            res.on('error', reject);
          });
          req.on('socket', (s) => sockets.add(s));
          req.on('error', reject);
          req.end();
        });
        expect(body.equals(i % 2 ? content : small)).toBe(true);
      }
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  test('a NAR removed from disk is a 404 on the next request, though its descriptor was kept', async () => {
    const gone = `${encodeBase32(randomBytes(32))}.nar.xz`;
    const file = join(t.dataDir, 'nars', 'nar', gone);
    writeFileSync(file, small);
    // Two downloads at once and one after: the descriptor is shared, then kept.
    const both = await Promise.all([get(`/nar/${gone}`), get(`/nar/${gone}`)]);
    expect(both.map((r) => r.body.equals(small))).toEqual([true, true]);
    expect((await get(`/nar/${gone}`)).status).toBe(200);
    rmSync(file);
    expect((await get(`/nar/${gone}`)).status).toBe(404);
  });

  test('a file put in a NAR\'s place, or changed in place, is served as it is now, not through the kept descriptor', async () => {
    const replaced = `${encodeBase32(randomBytes(32))}.nar.zst`;
    const file = join(t.dataDir, 'nars', 'nar', replaced);
    writeFileSync(file, small);
    expect((await get(`/nar/${replaced}`)).body.equals(small)).toBe(true); // kept open from here
    const other = randomBytes(300);
    writeFileSync(`${file}.new`, other);
    renameSync(`${file}.new`, file);
    expect((await get(`/nar/${replaced}`)).body.equals(other)).toBe(true);
    appendFileSync(file, 'x');
    expect((await get(`/nar/${replaced}`)).body.equals(Buffer.concat([other, Buffer.from('x')]))).toBe(true);
    truncateSync(file, other.length);
    expect((await get(`/nar/${replaced}`)).body.equals(other)).toBe(true);
  });

  test('a download cut off by its client leaves the kept descriptor good for the next ones', async () => {
    await get(`/nar/${name}`); // kept open from here
    for (let i = 0; i < 3; i++) {
      const cut = new AbortController();
      const res = await fetch(`${t.coordinator.url}/nar/${name}`, { signal: cut.signal });
      const reader = res.body!.getReader();
      await reader.read();
      cut.abort();
      await reader.read().catch(() => undefined);
    }
    const again = await get(`/nar/${name}`);
    expect(again.status).toBe(200);
    expect(again.body.equals(content)).toBe(true);
  });
});
