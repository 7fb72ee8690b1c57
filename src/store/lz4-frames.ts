// Reading an .lz4 file that is a concatenation of LZ4 frames, as kiln's cache serves
// NARs (one frame per ~1 MiB the agent sent). lz4-napi's decompressFrame decodes only
// the first frame of what it is given, so the stream is first cut at frame boundaries,
// found from the frame format (lz4_Frame_format.md): a header, blocks each prefixed by
// their size, an end mark, an optional checksum. Skippable frames are passed over.
import { decompressFrame } from 'lz4-napi';

export class Lz4FrameError extends Error {
  override name = 'Lz4FrameError';
}

const FRAME_MAGIC = 0x184d2204;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** A frame is held whole before it is decoded; kiln's are ~1 MiB. */
export const MAX_FRAME_BYTES = 256 << 20;

/** Chunks of a stream, read at absolute offsets without joining them. */
class Pending {
  chunks: Buffer[] = [];
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.length += chunk.length;
  }

  /** `n` bytes (n ≤ 8) from `offset`, which the caller checked are buffered. */
  bytes(offset: number, n: number): Buffer {
    const out = Buffer.alloc(n);
    let filled = 0;
    for (const chunk of this.chunks) {
      if (offset >= chunk.length) {
        offset -= chunk.length;
        continue;
      }
      filled += chunk.copy(out, filled, offset, Math.min(chunk.length, offset + n - filled));
      offset = 0;
      if (filled === n) break;
    }
    return out;
  }

  /** Removes and returns the first `n` bytes as one buffer. */
  take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.length);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    return all.subarray(0, n);
  }
}

/**
 * Follows the frame at the start of the buffered bytes, block header by block header, as
 * bytes arrive; remembers how far it got, so that each header is read once.
 */
class FrameCursor {
  /** Offset of the next block header within the frame; undefined before the header is read. */
  private pos: number | undefined;
  private blockChecksum = false;
  private contentChecksum = false;
  private skippable = false;

  /** Where the current frame ends, once that is known; undefined while more bytes are needed. */
  end(p: Pending, at: number): { end: number; skip: boolean } | undefined {
    if (this.pos === undefined) {
      if (p.length < 8) return undefined;
      const magic = p.bytes(0, 4).readUInt32LE(0);
      if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
        this.skippable = true;
        this.pos = 8 + p.bytes(4, 4).readUInt32LE(0);
      } else {
        if (magic !== FRAME_MAGIC) throw new Lz4FrameError(`byte ${at} does not start an LZ4 frame (magic 0x${magic.toString(16).padStart(8, '0')})`);
        const flg = p.bytes(4, 1)[0]!;
        if (flg >> 6 !== 1) throw new Lz4FrameError(`the LZ4 frame at byte ${at} has version ${flg >> 6}, not 1`);
        this.blockChecksum = (flg & 0x10) !== 0;
        this.contentChecksum = (flg & 0x04) !== 0;
        // Magic, FLG, BD, the optional content size and dictionary id, the header checksum.
        this.pos = 4 + 2 + (flg & 0x08 ? 8 : 0) + (flg & 0x01 ? 4 : 0) + 1;
      }
    }
    if (this.skippable) return { end: this.pos, skip: true };
    for (;;) {
      if (this.pos > MAX_FRAME_BYTES) throw new Lz4FrameError(`the LZ4 frame at byte ${at} is larger than ${MAX_FRAME_BYTES} bytes`);
      if (p.length < this.pos + 4) return undefined;
      const size = p.bytes(this.pos, 4).readUInt32LE(0);
      if (size === 0) return { end: this.pos + 4 + (this.contentChecksum ? 4 : 0), skip: false };
      // The high bit marks a block stored uncompressed; the rest is its size either way.
      this.pos += 4 + (size & 0x7fffffff) + (this.blockChecksum ? 4 : 0);
    }
  }

  reset(): void {
    this.pos = undefined;
    this.skippable = false;
  }
}

/** Cuts a stream of LZ4 bytes into whole frames, in order, skippable frames left out. */
export async function* splitLz4Frames(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
  const pending = new Pending();
  const cursor = new FrameCursor();
  let consumed = 0;
  const drain = function* (): Generator<Buffer> {
    for (;;) {
      const frame = cursor.end(pending, consumed);
      if (!frame || pending.length < frame.end) return;
      const bytes = pending.take(frame.end);
      cursor.reset();
      consumed += frame.end;
      if (!frame.skip) yield bytes;
    }
  };
  for await (const chunk of source) {
    pending.push(chunk);
    yield* drain();
  }
  if (pending.length > 0) throw new Lz4FrameError(`the LZ4 stream ends inside a frame that starts at byte ${consumed}`);
}

/** The decompressed bytes of a concatenation of LZ4 frames, a frame at a time. */
export async function* decompressLz4Frames(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const frame of splitLz4Frames(source)) yield await decompressFrame(frame);
}
