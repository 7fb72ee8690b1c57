import { describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import fc from 'fast-check';
import { compressFrame, compressFrameSync } from 'lz4-napi';
import { decompressLz4Frames, Lz4FrameError, splitLz4Frames } from '../../../src/store/lz4-frames.js';
import { bytes, collect, cut } from './nar-fixtures.js';

/** The frames, one by one. */
async function all(frames: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const f of frames) out.push(f);
  return out;
}

/** What lz4(1) makes of a file: frames it writes itself, with its default options. */
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
