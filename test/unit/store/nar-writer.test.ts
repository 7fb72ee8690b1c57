import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dumpPath, hashPath } from '../../../src/store/nar-writer.js';
import { NarError } from '../../../src/store/nar-format.js';
import { parseNar, type NarEvent } from '../../../src/store/nar-parser.js';
import { buildFixtureTree, bytes, collect, frame, nixDump, nixHashHex } from './nar-fixtures.js';

let tmp: string;
let tree: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'kiln-nar-writer-'));
  tree = join(tmp, 'tree');
  buildFixtureTree(tree);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('dumpPath', () => {
  test('writes a tree byte for byte as nix-store --dump does', async () => {
    const ours = await collect(dumpPath(tree));
    const theirs = nixDump(tree);
    expect(ours.length).toBe(theirs.length);
    expect(ours.equals(theirs)).toBe(true);
  });

  test.each([
    ['an empty file', 'empty'],
    ['an executable', 'hello.sh'],
    ['a file of 8·n bytes', 'eight-times-4'],
    ['a file of 8·n+1 bytes', 'eight-times-4-plus-1'],
    ['a symlink (not followed)', 'dir-link'],
    ['an empty directory', 'empty-dir'],
    ['a directory whose names sort differently by byte and by locale', 'order'],
  ])('writes %s at the root as nix-store --dump does', async (_what, rel) => {
    const path = join(tree, rel);
    expect((await collect(dumpPath(path))).equals(nixDump(path))).toBe(true);
  });

  test('reports the SHA-256 and size that nix-hash and nix-store compute', async () => {
    const dump = dumpPath(tree);
    const bytesOut = await collect(dump);
    const { sha256, size } = await dump.result;
    expect(sha256.toString('hex')).toBe(nixHashHex(tree));
    expect(size).toBe(nixDump(tree).length);
    expect(size).toBe(bytesOut.length);
  });

  test('hashPath gives the same hash and size without keeping the archive, refilling its chunks', async () => {
    const { sha256, size } = await hashPath(tree);
    expect(sha256.toString('hex')).toBe(nixHashHex(tree));
    expect(size).toBe(nixDump(tree).length);
    // Small chunks: the big file alone passes through ~800 of them, each refilled in turn.
    expect((await hashPath(tree, { chunkSize: 4096 })).sha256.toString('hex')).toBe(nixHashHex(tree));
  });

  test('orders entries by unsigned bytes, not by locale', async () => {
    const names: string[] = [];
    for await (const e of parseNar(dumpPath(join(tree, 'order')))) if (e.type === 'regular') names.push(e.path);
    expect(names).toEqual(['B', 'Z', '_', 'a', 'a-b', 'a.b', 'e\u0301', 'Ä', 'ä', '日本語']);
  });

  test('pads a file of 8·n+1 bytes with seven zeros and one of 8·n bytes with none', async () => {
    const header = frame('nix-archive-1', '(', 'type', 'regular', 'contents');
    const on = await collect(dumpPath(join(tree, 'eight-times-4')));
    const off = await collect(dumpPath(join(tree, 'eight-times-4-plus-1')));
    expect(on.length).toBe(header.length + 8 + 32 + frame(')').length);
    expect(off.length).toBe(header.length + 8 + 40 + frame(')').length);
    expect(off.subarray(header.length + 8 + 33, header.length + 8 + 40).equals(Buffer.alloc(7))).toBe(true);
  });

  test('cuts the archive into chunks of the requested size, also inside a file larger than a chunk', async () => {
    const chunks: Buffer[] = [];
    for await (const c of dumpPath(tree, { chunkSize: 4096 })) chunks.push(c);
    expect(chunks.length).toBeGreaterThan((3 << 20) / 4096);
    for (const c of chunks.slice(0, -1)) expect(c.length).toBe(4096);
    expect(Buffer.concat(chunks).equals(nixDump(tree))).toBe(true);
  });

  test('fills a chunk given back with recycle again, and the archive stays byte for byte the same', async () => {
    const dump = dumpPath(tree, { chunkSize: 4096 });
    const copies: Buffer[] = [];
    const seen = new Set<ArrayBufferLike>();
    let reused = 0;
    for await (const c of dump) {
      if (seen.has(c.buffer)) reused++;
      seen.add(c.buffer);
      copies.push(Buffer.from(c));
      dump.recycle(c);
    }
    expect(reused).toBeGreaterThan(copies.length / 2);
    expect(Buffer.concat(copies).equals(nixDump(tree))).toBe(true);
    expect((await dump.result).sha256.toString('hex')).toBe(nixHashHex(tree));
  });

  test('hands out chunks that later chunks never overwrite', async () => {
    const chunks: Buffer[] = [];
    const copies: Buffer[] = [];
    for await (const c of dumpPath(tree, { chunkSize: 64 << 10 })) {
      chunks.push(c);
      copies.push(Buffer.from(c));
    }
    expect(chunks.every((c, i) => c.equals(copies[i]!))).toBe(true);
  });

  test('does nothing until read, and closes the open file when the reader stops early', async () => {
    const later = join(tmp, 'created-after-dumpPath');
    const lazy = dumpPath(later);
    writeFileSync(later, 'created after dumpPath was called');
    expect((await collect(lazy)).equals(nixDump(later))).toBe(true);

    const before = openFds();
    const dump = dumpPath(join(tree, 'big'), { chunkSize: 4096 });
    for await (const _ of dump) {
      expect(openFds()).toBe(before + 1);
      break;
    }
    expect(openFds()).toBe(before);
    await expect(dump.result).rejects.toThrow(/not read to its end/);
  });

  test('stops with the signal reason when aborted', async () => {
    const controller = new AbortController();
    const dump = dumpPath(join(tree, 'big'), { chunkSize: 4096, signal: controller.signal });
    let chunks = 0;
    await expect(
      (async () => {
        for await (const _ of dump) if (++chunks === 3) controller.abort(new Error('shutting down'));
      })(),
    ).rejects.toThrow('shutting down');
    expect(chunks).toBeLessThan(10);
    await expect(dump.result).rejects.toThrow('shutting down');
  });

  test('fails with the file system error for a path that does not exist', async () => {
    await expect(collect(dumpPath(join(tmp, 'absent')))).rejects.toThrow(/ENOENT/);
  });

  test('refuses to archive a FIFO, naming it', async () => {
    const dir = join(tmp, 'with-fifo');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a'), 'a');
    execFileSync('mkfifo', [join(dir, 'pipe')]);
    const err = await collect(dumpPath(dir)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NarError);
    expect((err as NarError).message).toMatch(/pipe is a FIFO/);
    expect((err as NarError).path).toBe('pipe');
  });

  test('archives a symlink to a directory as a symlink, never the directory behind it', async () => {
    const dir = join(tmp, 'link-only');
    mkdirSync(dir);
    symlinkSync(tree, join(dir, 'to-tree'));
    const events: NarEvent[] = [];
    for await (const e of parseNar(dumpPath(dir))) events.push(e);
    expect(events.map((e) => `${e.type}:${e.path}`)).toEqual(['directory:', 'symlink:to-tree', 'directory-end:']);
  });

  test('streams a 40 MiB file in 1 MiB chunks and hashes it as nix-hash does', async () => {
    const path = join(tmp, 'forty-mib');
    writeFileSync(path, bytes(40 << 20, 'large'));
    let largest = 0;
    const dump = dumpPath(path);
    for await (const c of dump) largest = Math.max(largest, c.length);
    expect(largest).toBe(1 << 20);
    expect((await dump.result).sha256.toString('hex')).toBe(nixHashHex(path));
  });
});
