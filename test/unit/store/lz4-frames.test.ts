import { describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import fc from 'fast-check';
import { compressFrame, compressFrameSync, decompressFrame } from 'lz4-napi';
import {
  compressLz4Frame,
  decompressLz4Frame,
  decompressLz4Frames,
  headerChecksum,
  LZ4_BLOCK_BYTES,
  Lz4FrameError,
  splitLz4Frames,
} from '../../../src/store/lz4-frames.js';
import { bytes, collect, cut, sha256Hex } from './nar-fixtures.js';

/** The frames, one by one. */
async function all(frames: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const f of frames) out.push(f);
  return out;
}

/** What lz4(1) makes of its input with `args` (-d: decompresses). */
function lz4Cli(input: Buffer, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile('lz4', [...args, '-c'], { encoding: 'buffer', maxBuffer: 1 << 28 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    child.stdin!.end(input);
  });
}

describe('LZ4 frame concatenations', () => {
  test('are cut into the frames they were made of, however the bytes arrive', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 3000 }), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 12 }), async (plains, cuts) => {
        const frames = await Promise.all(plains.map((p) => compressFrame(p)));
        const stream = Buffer.concat(frames);
        const pieces = () => cut(stream, cuts.map((c) => c % (stream.length + 1)));
        expect(await all(splitLz4Frames(pieces()))).toEqual(frames);
        expect(await collect(decompressLz4Frames(pieces()))).toEqual(Buffer.concat(plains.map((p) => Buffer.from(p))));
      }),
      { numRuns: 50 },
    );
  });

  test('decode what lz4(1) writes: several blocks, checksums, a content size, skippable frames', async () => {
    const plain = bytes(300_000); // several 64 KiB blocks
    const withChecksums = await lz4Cli(plain, ['-B4', '-BX', '--content-size']);
    const skippable = Buffer.alloc(8 + 5);
    skippable.writeUInt32LE(0x184d2a53, 0);
    skippable.writeUInt32LE(5, 4);
    const frames = [withChecksums, skippable, compressFrameSync(Buffer.from('tail'))];
    const out = await collect(decompressLz4Frames(cut(Buffer.concat(frames), [1, 7, 100, 70_000, 200_000])));
    expect(out).toEqual(Buffer.concat([plain, Buffer.from('tail')]));
  });

  test('refuse bytes that are not a frame, and a stream that stops inside one', async () => {
    await expect(all(splitLz4Frames([Buffer.from('not an lz4 frame at all')]))).rejects.toThrow(/byte 0 does not start an LZ4 frame/);
    const frame = compressFrameSync(Buffer.from('hello'));
    await expect(all(splitLz4Frames([frame, frame.subarray(0, frame.length - 2)]))).rejects.toThrow(Lz4FrameError);
    await expect(all(splitLz4Frames([frame, frame.subarray(0, frame.length - 2)]))).rejects.toThrow(`ends inside a frame that starts at byte ${frame.length}`);
  });
});

/** Text-like bytes LZ4 shrinks, then incompressible ones: a frame with both kinds of block. */
function mixed(length: number): Buffer {
  const text = Buffer.from('the quick brown fox jumps over the lazy dog; '.repeat(Math.ceil(length / 90)));
  return Buffer.concat([text.subarray(0, length >> 1), bytes(length - (length >> 1))]);
}

/** A frame by hand: magic, FLG, BD, header checksum, then `rest` (blocks, end mark). */
function handFrame(flg: number, bd: number, rest: Buffer, descriptorExtra = Buffer.alloc(0)): Buffer {
  const descriptor = Buffer.concat([Buffer.from([flg, bd]), descriptorExtra]);
  return Buffer.concat([Buffer.from([0x04, 0x22, 0x4d, 0x18]), descriptor, Buffer.from([headerChecksum(descriptor)]), rest]);
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

describe('kiln LZ4 frames', () => {
  test('decode to what was compressed, here and by lz4-napi, however the bytes mix', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 3 * LZ4_BLOCK_BYTES + 10 }), fc.boolean(), async (length, compressible) => {
        const plain = compressible ? mixed(length) : bytes(length);
        const frame = await compressLz4Frame(plain);
        expect(sha256Hex(await decompressLz4Frame(frame))).toBe(sha256Hex(plain));
        expect(sha256Hex(await decompressFrame(frame))).toBe(sha256Hex(plain));
      }),
      { numRuns: 40 },
    );
  });

  test('are read by lz4(1), concatenated as kiln stores them', async () => {
    const plains = [mixed(LZ4_BLOCK_BYTES), bytes(LZ4_BLOCK_BYTES), mixed(600_000), Buffer.alloc(0), Buffer.from('tail')];
    const frames = await Promise.all(plains.map((p) => compressLz4Frame(p)));
    expect(sha256Hex(await lz4Cli(Buffer.concat(frames), ['-d']))).toBe(sha256Hex(Buffer.concat(plains)));
  });

  test('store a block LZ4 does not shrink as it is, and compress one it does', async () => {
    const random = bytes(1000);
    const stored = await compressLz4Frame(random);
    expect(stored.length).toBe(7 + 4 + 1000 + 4);
    expect(stored.readUInt32LE(7)).toBe((0x8000_0000 | 1000) >>> 0);
    expect(decompressLz4Frame(stored)).toEqual(random); // decoded here, synchronously
    const text = mixed(1000).subarray(0, 500);
    expect((await compressLz4Frame(text)).length).toBeLessThan(200);
  });

  test('carry the header checksum other encoders write', () => {
    const theirs = compressFrameSync(Buffer.alloc(100)); // lz4_flex: FLG 0x60, BD 0x40
    expect(headerChecksum(theirs.subarray(4, 6))).toBe(theirs[6]);
    expect(headerChecksum(Buffer.from([0x60, 0x50]))).toBe(0xfb); // lz4_flex's header for 256 KiB blocks
  });

  test('the reader takes frames other encoders make: checksums, dependent blocks, a content size', async () => {
    const plain = mixed(300_000);
    const frames = [
      await compressFrame(plain),
      await compressFrame(plain, { contentChecksum: true, blockChecksums: true }),
      await lz4Cli(plain, ['-B4', '-BX', '--content-size']),
      await lz4Cli(plain, ['-B4', '-BD']),
      await lz4Cli(plain, ['-B7']),
    ];
    for (const frame of frames) expect(sha256Hex(await decompressLz4Frame(frame))).toBe(sha256Hex(plain));
    // lz4_flex's plain frames (independent blocks, no checksums) are decoded here, not on the pool.
    expect(Buffer.isBuffer(decompressLz4Frame(frames[0]!))).toBe(true);
    const checked = decompressLz4Frame(frames[1]!);
    expect(Buffer.isBuffer(checked)).toBe(false);
    await checked;
  });

  test('the reader refuses malformed frames, saying what is wrong', async () => {
    const good = await compressLz4Frame(mixed(2000));
    // Thrown or rejected, as the frame's kind decides: both end up as a rejection here.
    const refused = async (frame: Buffer, message: RegExp | string, maxPlain?: number) => {
      const decoding = (async () => decompressLz4Frame(frame, maxPlain))();
      await expect(decoding).rejects.toThrow(Lz4FrameError);
      await expect(decoding).rejects.toThrow(message);
    };
    await refused(Buffer.from('not a frame at all'), /does not start with the LZ4 frame magic/);
    await refused(good.subarray(0, 5), /5 bytes are too few/);
    const badChecksum = Buffer.from(good);
    badChecksum[6] = badChecksum[6]! ^ 0xff;
    await refused(badChecksum, 'header checksum does not match');
    await refused(handFrame(0x62, 0x50, u32(0)), 'a reserved bit');
    await refused(handFrame(0xa0, 0x50, u32(0)), 'version is 2');
    await refused(handFrame(0x60, 0x30, u32(0)), 'block size id 3');
    await refused(good.subarray(0, good.length - 1), /ends at byte/);
    await refused(Buffer.concat([good, good]), `${good.length} bytes follow its end`);
    // A block longer than the header allows (64 KiB), stored.
    await refused(handFrame(0x60, 0x40, Buffer.concat([u32(0x8000_0000 | 65537), Buffer.alloc(65537), u32(0)])), 'more than the 65536');
    // A compressed block that is not LZ4.
    await refused(handFrame(0x60, 0x40, Buffer.concat([u32(6), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), u32(0)])), /block at byte 7 does not decode/);
    // A block that decodes past the header's block size: 256 KiB of zeros framed as 64 KiB blocks.
    const big = compressFrameSync(Buffer.alloc(LZ4_BLOCK_BYTES));
    await refused(handFrame(0x60, 0x40, big.subarray(7)), /does not decode/);
    // A declared content size the blocks do not match.
    const contentSize = Buffer.alloc(8);
    contentSize.writeUInt32LE(5);
    await refused(handFrame(0x68, 0x40, Buffer.concat([u32(0x8000_0000 | 4), Buffer.from('four'), u32(0)]), contentSize), 'decodes to 4 bytes, not the 5');
    // More than the caller takes: refused from the block sizes, before anything is decoded.
    await refused(good, /may decode to 262144 bytes; at most 1000/, 1000);
  });
});
