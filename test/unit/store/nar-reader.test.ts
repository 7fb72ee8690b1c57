import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createReadStream, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { NarError } from '../../../src/store/nar-format.js';
import { parseNar, type NarEvent } from '../../../src/store/nar-parser.js';
import { unpackNar } from '../../../src/store/nar-reader.js';
import { dumpPath } from '../../../src/store/nar-writer.js';
import { buildFixtureTree, collect, cut, dir, encodeEvents, file, frame, link, narOf, nixDump, nixHashHex, type Token } from './nar-fixtures.js';

let tmp: string;
let tree: string;
let treeNar: Buffer;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'kiln-nar-reader-'));
  tree = join(tmp, 'tree');
  buildFixtureTree(tree);
  treeNar = nixDump(tree);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let cases = 0;
/** A fresh, empty directory to unpack into (as `<it>/out`), inside one that must stay empty but for it. */
function sandbox(): { outer: string; inner: string; target: string } {
  const outer = join(tmp, `case-${++cases}`);
  const inner = join(outer, 'sandbox');
  mkdirSync(inner, { recursive: true });
  return { outer, inner, target: join(inner, 'out') };
}

async function events(source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<NarEvent[]> {
  const out: NarEvent[] = [];
  for await (const e of parseNar(source)) out.push(e.type === 'contents' ? { ...e, chunk: Buffer.from(e.chunk) } : e);
  return out;
}

describe('unpackNar', () => {
  test('unpacks nix-store --dump output into a tree that Nix dumps back to the same bytes', async () => {
    const { target } = sandbox();
    const result = await unpackNar([treeNar], target);
    expect(nixDump(target).equals(treeNar)).toBe(true);
    expect(result.sha256.toString('hex')).toBe(nixHashHex(tree));
    expect(result.size).toBe(treeNar.length);
    // Spot checks of what the bytes mean on disk.
    expect(lstatSync(join(target, 'hello.sh')).mode & 0o111).toBe(0o111);
    expect(lstatSync(join(target, 'group-exec')).mode & 0o100).toBe(0);
    expect(readlinkSync(join(target, 'dir-link'))).toBe('nested');
    expect(lstatSync(join(target, 'dir-link')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(target, 'nested/a/b/c/deep.txt'), 'utf8')).toBe('deep\n');
    expect(readdirSync(join(target, 'empty-dir'))).toEqual([]);
  });

  test('round-trips: kiln dump, unpack, kiln dump again gives the same bytes', async () => {
    const first = await collect(dumpPath(tree));
    const { target } = sandbox();
    await unpackNar(dumpPath(tree), target);
    expect((await collect(dumpPath(target))).equals(first)).toBe(true);
  });

  test('unpacks a lone file, executable or not, and a lone symlink at the target', async () => {
    const { inner } = sandbox();
    await unpackNar([narOf(file('plain'))], join(inner, 'f'));
    await unpackNar([narOf(file('#!/bin/sh\n', true))], join(inner, 'x'));
    await unpackNar([narOf(link('/somewhere/else'))], join(inner, 'l'));
    expect(readFileSync(join(inner, 'f'), 'utf8')).toBe('plain');
    expect(lstatSync(join(inner, 'f')).mode & 0o111).toBe(0);
    expect(lstatSync(join(inner, 'x')).mode & 0o111).toBe(0o111);
    expect(readlinkSync(join(inner, 'l'))).toBe('/somewhere/else');
  });

  test('gives the same events and hash whatever the chunk boundaries', async () => {
    const whole = await events([treeNar]);
    const head = treeNar.subarray(0, 64 << 10); // byte by byte is slow on 3 MiB: the start has every token kind
    const headCuts = Array.from({ length: head.length }, (_, i) => i);
    const wholeHead = await events([head]).catch((e: unknown) => e);
    const byteHead = await events(cut(head, headCuts)).catch((e: unknown) => e);
    expect(String(byteHead)).toBe(String(wholeHead)); // both truncated, at the same place
    const oddCuts = Array.from({ length: 500 }, (_, i) => (i * 7919) % treeNar.length);
    const odd = parseNar(cut(treeNar, oddCuts));
    const oddEvents: NarEvent[] = [];
    for await (const e of odd) oddEvents.push(e.type === 'contents' ? { ...e, chunk: Buffer.from(e.chunk) } : e);
    expect(encodeEvents(oddEvents).equals(treeNar)).toBe(true);
    expect(encodeEvents(whole).equals(treeNar)).toBe(true);
    expect((await odd.result).sha256.toString('hex')).toBe(nixHashHex(tree));
  });

  test('unpacks from a Readable (a file stream with small reads), and dumpPath feeds a Readable', async () => {
    const narFile = join(tmp, 'tree.nar');
    writeFileSync(narFile, treeNar);
    const { inner } = sandbox();
    const result = await unpackNar(createReadStream(narFile, { highWaterMark: 1000 }), join(inner, 'from-file'));
    expect(result.sha256.toString('hex')).toBe(nixHashHex(tree));
    await unpackNar(Readable.from(dumpPath(tree)), join(inner, 'from-readable'));
    expect(nixDump(join(inner, 'from-file')).equals(treeNar)).toBe(true);
    expect(nixDump(join(inner, 'from-readable')).equals(treeNar)).toBe(true);
  });

  test('refuses a target that already exists and leaves it as it was', async () => {
    const { inner, target } = sandbox();
    mkdirSync(target);
    writeFileSync(join(target, 'mine'), 'keep');
    await expect(unpackNar([treeNar], target)).rejects.toThrow(/EEXIST/);
    expect(readdirSync(target)).toEqual(['mine']);
    expect(readdirSync(inner)).toEqual(['out']);
  });

  test('removes what it created when the stream fails midway', async () => {
    const { inner, target } = sandbox();
    async function* failing(): AsyncGenerator<Buffer> {
      yield treeNar.subarray(0, treeNar.length >> 1);
      throw new Error('connection reset');
    }
    await expect(unpackNar(failing(), target)).rejects.toThrow('connection reset');
    expect(readdirSync(inner)).toEqual([]);
  });
});

/**
 * Unpacks `nar` (whole, then one byte at a time), expecting a NarError matching `message`,
 * and nothing left behind: neither in the sandbox nor next to it.
 */
async function expectRefused(nar: Buffer, message: RegExp, where: { path?: string; offset?: number } = {}): Promise<NarError> {
  let first: NarError | undefined;
  for (const chunks of [[nar], cut(nar, Array.from({ length: nar.length }, (_, i) => i))]) {
    const { outer, inner, target } = sandbox();
    const err = await unpackNar(chunks, target).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NarError);
    const narErr = err as NarError;
    expect(narErr.message).toMatch(message);
    if ('path' in where) expect(narErr.path).toBe(where.path);
    if ('offset' in where) expect(narErr.offset).toBe(where.offset);
    expect(readdirSync(inner)).toEqual([]);
    expect(readdirSync(outer)).toEqual(['sandbox']);
    if (first) expect(narErr.message).toBe(first.message);
    first = narErr;
  }
  return first!;
}

/** Offset of an entry's name field in narOf(dir([name, …], …)) as its first entry. */
const FIRST_NAME_AT = frame('nix-archive-1', '(', 'type', 'directory', 'entry', '(', 'name').length;

describe('unpackNar refuses', () => {
  test.each([
    ['.', /entry name "\."/],
    ['..', /entry name "\.\."/],
    ['', /an empty entry name/],
    ['a/b', /containing "\/"/],
    ['../escape', /containing "\/"/],
    ['a\0b', /NUL/],
  ])('refuses a NAR entry named %j, writing nothing anywhere', async (name, message) => {
    await expectRefused(narOf(dir([name, dir(['escape', file('gotcha')])])), message, { path: '', offset: FIRST_NAME_AT });
  });

  test('refuses entries out of byte order', async () => {
    const err = await expectRefused(narOf(dir(['b', file('')], ['a', file('')])), /"a" comes after "b"/, { path: '' });
    expect(err.message).toMatch(/byte offset \d+/);
  });

  test("refuses 'a' after 'B'-style locale order when bytes say otherwise", async () => {
    await expectRefused(narOf(dir(['a', file('')], ['B', file('')])), /"B" comes after "a"/);
  });

  test('refuses a duplicated entry', async () => {
    await expectRefused(narOf(dir(['sub', dir(['x', file('1')], ['x', file('2')])])), /"x" appears twice/, { path: 'sub' });
  });

  test('refuses an unknown node type', async () => {
    const offset = frame('nix-archive-1', '(', 'type').length;
    await expectRefused(narOf(['(', 'type', 'fifo', ')']), /unknown node type "fifo"/, { path: '', offset });
  });

  test('refuses an unknown token where an entry or the end of a directory belongs', async () => {
    await expectRefused(narOf(['(', 'type', 'directory', 'entries', ')']), /expected "entry" or "\)" in a directory, found "entries"/);
  });

  test('refuses a stream that is not a NAR', async () => {
    await expectRefused(frame('nix-archive-2', ...file('')), /not a NAR/, { offset: 0 });
    await expectRefused(Buffer.from('<html>not found</html>\n'.repeat(4)), /not a NAR|absurd length/, { offset: 0 });
  });

  test('refuses an entry under a regular file', async () => {
    const nar = narOf(dir(['f', ['(', 'type', 'regular', 'entry', '(', 'name', 'x', 'node', ...file(''), ')', ')']]));
    await expectRefused(nar, /an entry inside a regular file/, { path: 'f' });
  });

  test('refuses an entry under a regular file, after its contents', async () => {
    const nar = narOf(dir(['f', ['(', 'type', 'regular', 'contents', 'data', 'entry', '(', 'name', 'x', 'node', ...file(''), ')', ')']]));
    await expectRefused(nar, /an entry inside a regular file/, { path: 'f' });
  });

  test('refuses an entry under a symlink', async () => {
    const nar = narOf(dir(['l', ['(', 'type', 'symlink', 'target', '/tmp', 'entry', '(', 'name', 'x', 'node', ...file('pwned'), ')', ')']]));
    await expectRefused(nar, /an entry inside a symlink/, { path: 'l' });
  });

  test('refuses non-zero padding', async () => {
    const nar = narOf(dir(['f', file('abc')]));
    const at = nar.indexOf('abc') + 3;
    nar[at + 2] = 0x01;
    await expectRefused(nar, /non-zero padding after the file contents/, { path: 'f', offset: at });
  });

  test('refuses non-zero padding after a name', async () => {
    const nar = narOf(dir(['abc', file('')]));
    nar[FIRST_NAME_AT + 8 + 3] = 0x20;
    await expectRefused(nar, /non-zero padding after an entry name/, { offset: FIRST_NAME_AT + 11 });
  });

  test('refuses a truncated stream, wherever it is cut', async () => {
    const nar = narOf(dir(['a', file('hello, world')], ['l', link('a')], ['sub', dir(['x', file('', true)])]));
    for (const end of [0, 7, 8, 20, nar.indexOf('hello') + 3, nar.length - 9, nar.length - 1]) {
      await expectRefused(nar.subarray(0, end), /ends early/);
    }
  });

  test('refuses trailing bytes after the archive', async () => {
    const nar = narOf(dir(['a', file('x')]));
    await expectRefused(Buffer.concat([nar, frame(')')]), /trailing bytes/, { offset: nar.length });
    await expectRefused(Buffer.concat([nar, Buffer.from([0])]), /trailing bytes/, { offset: nar.length });
  });

  test('refuses an entry name longer than 255 bytes', async () => {
    await expectRefused(narOf(dir(['n'.repeat(256), file('')])), /entry name of 256 bytes \(at most 255\)/, { offset: FIRST_NAME_AT });
  });

  test('refuses a symlink target longer than 4096 bytes', async () => {
    await expectRefused(narOf(dir(['l', link('/x'.repeat(2049))])), /symlink target of 4098 bytes \(at most 4096\)/, { path: 'l' });
  });

  test('refuses an absurd length without trying to read it', async () => {
    const huge = Buffer.alloc(8);
    huge.writeBigUInt64LE(1n << 62n);
    const nar = Buffer.concat([frame('nix-archive-1', '(', 'type', 'regular', 'contents'), huge, Buffer.alloc(64)]);
    await expectRefused(nar, /absurd length 4611686018427387904 for the file size/, { path: '' });
  });

  test('refuses an over-long token where a keyword belongs', async () => {
    const nar = narOf(['(', 'type', 'x'.repeat(5000), ')']);
    await expectRefused(nar, /unknown node type a string of 5000 bytes/);
  });

  test('refuses an empty symlink target', async () => {
    await expectRefused(narOf(dir(['l', link('')])), /empty target/, { path: 'l' });
  });

  test('refuses a regular file without contents (not what Nix writes)', async () => {
    await expectRefused(narOf(dir(['f', ['(', 'type', 'regular', ')']])), /expected "executable" or "contents" in a regular file, found "\)"/);
  });

  test('refuses an executable flag with a value', async () => {
    await expectRefused(narOf(['(', 'type', 'regular', 'executable', 'yes', 'contents', '', ')']), /expected "" in a regular file, found "yes"|expected ""/);
  });

  test('refuses a path within the archive longer than 4096 bytes', async () => {
    let node: Token[] = file('');
    for (let i = 0; i < 20; i++) node = dir(['d'.repeat(250), node]);
    await expectRefused(narOf(node), /longer than 4096 bytes/);
  });
});
