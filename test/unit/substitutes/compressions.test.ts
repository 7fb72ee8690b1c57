// The cache's compressions: the configuration's list read with the place of each mistake,
// the defaults per store directory, and compressing as a stream through the zstd program
// and zlib, checked by decompressing with the standard tools.
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { checkCompressionTools, compress, defaultCompressions, parseCompressions, type Compression } from '../../../src/substitutes/compressions.js';

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of chunks) out.push(c);
  return Buffer.concat(out);
}

/** A NAR-sized input in pieces, half of it compressible. */
async function* input(pieces: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < pieces; i++) yield Buffer.concat([randomBytes(32 << 10), Buffer.alloc(32 << 10, i)]);
}

describe('the cache compressions', () => {
  test('reads NAME and NAME:LEVEL, with each compression\'s usual level when none is given', () => {
    expect(parseCompressions(['lz4', 'zstd', 'gzip:9'], 'c')).toEqual([{ name: 'lz4' }, { name: 'zstd', level: 3 }, { name: 'gzip', level: 9 }]);
  });

  test.each([
    [[], /c: must be a list of compressions/],
    ['lz4', /c: must be a list of compressions/],
    [['lz4', 'xz'], /c\[1\]: "xz" is not a compression the cache can keep/],
    [['lz4:3'], /c\[0\]: lz4 takes no level/],
    [['lz4', 'gzip:0'], /c\[1\]: gzip levels go from 1 to 9, not 0/],
    [['gzip'], /c: must include lz4/],
  ])('refuses %j, naming the entry', (list, message) => {
    expect(() => parseCompressions(list, 'c')).toThrow(message);
  });

  test('keeps zstd beside LZ4 by default only for a store directory other than Nix\'s, whose Guix clients cannot read LZ4', () => {
    expect(defaultCompressions('/nix/store').map((c) => c.name)).toEqual(['lz4']);
    expect(defaultCompressions('/gnu/store').map((c) => c.name)).toEqual(['lz4', 'zstd']);
  });

  test.each([
    [{ name: 'zstd', level: 3 }, (b: Buffer) => spawnSync('zstd', ['-d', '-c'], { input: b, maxBuffer: 1 << 26 }).stdout],
    [{ name: 'gzip', level: 6 }, (b: Buffer) => gunzipSync(b)],
  ] as [Compression, (b: Buffer) => Buffer][])('%j compresses a stream that the standard tool decompresses to the same bytes', async (compression, decompress) => {
    const signal = new AbortController().signal;
    expect(decompress(await collect(compress(compression, input(0), signal)))).toEqual(Buffer.alloc(0));
    const pieces: Buffer[] = [];
    const compressed = await collect(
      compress(
        compression,
        (async function* () {
          for await (const piece of input(40)) yield pieces[pieces.push(piece) - 1]!;
        })(),
        signal,
      ),
    );
    const original = Buffer.concat(pieces);
    expect(compressed.length).toBeLessThan(original.length * 0.6);
    expect(decompress(compressed).equals(original)).toBe(true);
  });

  test('an input that fails midway fails the compression with its own error, not a truncated file', async () => {
    async function* broken(): AsyncGenerator<Buffer> {
      yield randomBytes(1 << 16);
      throw new Error('the stored NAR could not be read');
    }
    for (const compression of [{ name: 'zstd' }, { name: 'gzip' }] as Compression[]) {
      await expect(collect(compress(compression, broken(), new AbortController().signal))).rejects.toThrow('the stored NAR could not be read');
    }
  });

  test('says that the zstd program is missing, and how to install it', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await expect(checkCompressionTools([{ name: 'lz4' }, { name: 'zstd', level: 3 }])).rejects.toThrow(/the zstd program is not installed \(Debian: apt-get install zstd\)/);
      await expect(checkCompressionTools([{ name: 'lz4' }])).resolves.toBeUndefined();
    } finally {
      process.env.PATH = path;
    }
    await expect(checkCompressionTools([{ name: 'zstd', level: 3 }])).resolves.toBeUndefined();
  });
});
