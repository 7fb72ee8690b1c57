// Build logs on disk, one file per attempt, kept as the agent sent them (LZ4 frames)
// and decompressed only when read. Written to a temporary name and renamed, so a log
// is either whole or absent; one that finds the disk full leaves nothing and is refused
// as out of space (disk-space.ts). A log that passes its size limit is refused the same
// way: nothing of it is kept.
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { decompressLz4Frame } from '../store/lz4-frames.js';
import { isUuid } from '../uuid.js';
import { isOutOfSpace, outOfSpaceError } from './disk-space.js';

/** Splits a concatenation of LZ4 frames as stored: a u32 length precedes each frame. */
const LENGTH_BYTES = 4;

/** A log passed the most bytes (uncompressed) it may have; nothing of it was kept. */
export class LogTooLargeError extends Error {
  override name = 'LogTooLargeError';
  constructor(readonly maxBytes: number) {
    super(`the log passed its limit of ${maxBytes} bytes`);
  }
}

export class LogStorage {
  private constructor(private readonly dir: string) {}

  static async open(dir: string): Promise<LogStorage> {
    await mkdir(dir, { recursive: true });
    return new LogStorage(dir);
  }

  private path(buildId: string, attempt: number): string {
    if (!isUuid(buildId) || !Number.isInteger(attempt) || attempt < 1) throw new Error(`bad log key ${buildId}/${attempt}`);
    return join(this.dir, `${buildId}-${attempt}.log.lz4`);
  }

  /**
   * Stores a log from its LZ4 frames; returns its uncompressed size. Past `maxBytes`
   * (uncompressed; 0: no limit) it stops reading and throws LogTooLargeError.
   */
  async write(buildId: string, attempt: number, frames: AsyncIterable<Uint8Array>, maxBytes = 0): Promise<number> {
    const final = this.path(buildId, attempt);
    const temp = `${final}.part`;
    const out = createWriteStream(temp);
    let size = 0;
    try {
      for await (const frame of frames) {
        // Decompressing checks the frame now, not when someone reads the log.
        size += (await decompressLz4Frame(frame)).length;
        if (maxBytes > 0 && size > maxBytes) throw new LogTooLargeError(maxBytes);
        const length = Buffer.alloc(LENGTH_BYTES);
        length.writeUInt32LE(frame.length);
        if (!out.write(Buffer.concat([length, frame]))) await once(out, 'drain');
      }
      out.end();
      await finished(out);
      await rename(temp, final);
      return size;
    } catch (err) {
      out.destroy();
      await rm(temp, { force: true });
      throw isOutOfSpace(err) ? await outOfSpaceError(err, `the log of build ${buildId} (attempt ${attempt})`, temp, this.dir) : err;
    }
  }

  async exists(buildId: string, attempt: number): Promise<boolean> {
    return (await stat(this.path(buildId, attempt)).catch(() => undefined)) !== undefined;
  }

  /** The log's text, decompressed frame by frame. */
  async *read(buildId: string, attempt: number): AsyncGenerator<Buffer> {
    let pending: Buffer = Buffer.alloc(0);
    for await (const chunk of createReadStream(this.path(buildId, attempt), { highWaterMark: 1 << 20 })) {
      pending = pending.length ? Buffer.concat([pending, chunk as Buffer]) : (chunk as Buffer);
      while (pending.length >= LENGTH_BYTES) {
        const length = pending.readUInt32LE(0);
        if (pending.length < LENGTH_BYTES + length) break;
        yield await decompressLz4Frame(pending.subarray(LENGTH_BYTES, LENGTH_BYTES + length));
        pending = pending.subarray(LENGTH_BYTES + length);
      }
    }
  }
}
