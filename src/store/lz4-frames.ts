// LZ4 frames (lz4_Frame_format.md) as kiln makes and reads them.
//
// Making: kiln frames its chunks itself around lz4-napi's block compressor: its frame
// encoder costs about twice the block compressor's CPU for the same bytes, and its frame
// decoder several times the block decoder's. A frame is the magic, FLG (version 01,
// independent blocks, no checksums: the NAR's SHA-256 covers the bytes end to end), BD
// (256 KiB blocks), the header checksum, blocks of at most 256 KiB each prefixed by its
// size (the high bit set for a block stored as it is, when LZ4 does not shrink it), and the
// end mark. Nix (libarchive), `lz4 -d` and lz4-napi read such frames.
//
// Reading: any valid frame a client sends is taken. One with independent blocks and no
// checksums or dictionary is decoded here, block by block with the block decoder (a
// stored block needs no decoding); any other kind goes to lz4-napi's frame decoder,
// which checks its checksums. Every size the frame declares is bounded before anything
// is allocated for it.
//
// A stored .lz4 file is a concatenation of frames (one per MiB the agent sent).
// lz4-napi's decompressFrame decodes only the first frame of what it is given, so such a
// stream is first cut at frame boundaries, found from the frame format: a header, blocks
// each prefixed by their size, an end mark, an optional checksum. Skippable frames are
// passed over.
import { compress, decompressFrame, uncompressSync } from 'lz4-napi';

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
  for await (const frame of splitLz4Frames(source)) yield await decompressLz4Frame(frame);
}

// ---- One frame: making it, reading it ----

const FLG_VERSION_MASK = 0xc0;
const FLG_VERSION_01 = 0x40;
const FLG_INDEPENDENT_BLOCKS = 0x20;
const FLG_BLOCK_CHECKSUM = 0x10;
const FLG_CONTENT_SIZE = 0x08;
const FLG_CONTENT_CHECKSUM = 0x04;
const FLG_RESERVED = 0x02;
const FLG_DICTIONARY_ID = 0x01;
/** BD: bits 6–4 name the maximum block size; the others are reserved (zero). */
const BD_RESERVED = 0x8f;
const BLOCK_MAX_BY_ID = new Map([
  [4, 64 << 10],
  [5, 256 << 10],
  [6, 1 << 20],
  [7, 4 << 20],
]);
/** The high bit of a block's size word: the block is stored as it is. */
const BLOCK_STORED = 0x8000_0000;
const SIZE_WORD = 4;
/** lz4-napi's block functions put the uncompressed size (u32 LE) in front of a block. */
const SIZE_PREFIX = 4;

/** Uncompressed bytes per block of the frames kiln makes (BD's 256 KiB). */
export const LZ4_BLOCK_BYTES = 256 << 10;
/**
 * What one frame a client sends may decode to, at most: kiln's are 1 MiB; a frame of
 * 4 MiB blocks (the lz4 tool's) fits many. The decoded frame is held whole.
 */
export const MAX_FRAME_PLAIN_BYTES = 64 << 20;

const XXH_PRIME1 = 0x9e3779b1;
const XXH_PRIME2 = 0x85ebca77;
const XXH_PRIME3 = 0xc2b2ae3d;
const XXH_PRIME4 = 0x27d4eb2f;
const XXH_PRIME5 = 0x165667b1;

const rotl = (x: number, r: number): number => (x << r) | (x >>> (32 - r));

/**
 * The frame descriptor's checksum byte: the second byte of XXH32 (seed 0) of the
 * descriptor (FLG up to the dictionary id). A descriptor is 2 to 14 bytes, so only XXH32's
 * path for inputs shorter than its 16-byte stripe is needed.
 */
export function headerChecksum(descriptor: Uint8Array): number {
  if (descriptor.length >= 16) throw new RangeError(`an LZ4 frame descriptor is at most 14 bytes, not ${descriptor.length}`);
  let h = (XXH_PRIME5 + descriptor.length) | 0;
  let i = 0;
  for (; i + 4 <= descriptor.length; i += 4) {
    const word = descriptor[i]! | (descriptor[i + 1]! << 8) | (descriptor[i + 2]! << 16) | (descriptor[i + 3]! << 24);
    h = Math.imul(rotl((h + Math.imul(word, XXH_PRIME3)) | 0, 17), XXH_PRIME4);
  }
  for (; i < descriptor.length; i++) h = Math.imul(rotl((h + Math.imul(descriptor[i]!, XXH_PRIME5)) | 0, 11), XXH_PRIME1);
  h ^= h >>> 15;
  h = Math.imul(h, XXH_PRIME2);
  h ^= h >>> 13;
  h = Math.imul(h, XXH_PRIME3);
  h ^= h >>> 16;
  return (h >>> 8) & 0xff;
}

const KILN_FLG = FLG_VERSION_01 | FLG_INDEPENDENT_BLOCKS;
const KILN_BD = 5 << 4; // LZ4_BLOCK_BYTES
const FRAME_HEADER = Buffer.from([0x04, 0x22, 0x4d, 0x18, KILN_FLG, KILN_BD, headerChecksum(Buffer.from([KILN_FLG, KILN_BD]))]);
const END_MARK = 4;

/**
 * `plain` as one LZ4 frame (independent 256 KiB blocks, no checksums), its blocks
 * compressed on libuv's thread pool. A block LZ4 does not shrink is stored as it is.
 */
export async function compressLz4Frame(plain: Uint8Array): Promise<Buffer> {
  const pending: Promise<Buffer>[] = [];
  for (let at = 0; at < plain.length; at += LZ4_BLOCK_BYTES) pending.push(compress(plain.subarray(at, at + LZ4_BLOCK_BYTES)));
  const compressed = await Promise.all(pending);
  let size = FRAME_HEADER.length + END_MARK;
  const packed = compressed.map((block, i) => {
    const raw = Math.min(LZ4_BLOCK_BYTES, plain.length - i * LZ4_BLOCK_BYTES);
    const n = block.length - SIZE_PREFIX;
    size += SIZE_WORD + Math.min(n, raw);
    return n < raw;
  });
  const frame = Buffer.allocUnsafe(size);
  let pos = FRAME_HEADER.copy(frame, 0);
  compressed.forEach((block, i) => {
    if (packed[i]) {
      pos = frame.writeUInt32LE(block.length - SIZE_PREFIX, pos);
      pos += block.copy(frame, pos, SIZE_PREFIX);
    } else {
      const raw = plain.subarray(i * LZ4_BLOCK_BYTES, (i + 1) * LZ4_BLOCK_BYTES);
      pos = frame.writeUInt32LE((raw.length | BLOCK_STORED) >>> 0, pos);
      frame.set(raw, pos);
      pos += raw.length;
    }
  });
  frame.writeUInt32LE(0, pos);
  return frame;
}

interface BlockAt {
  /** Offset of the block's data (after its size word) in the frame. */
  at: number;
  size: number;
  stored: boolean;
}

interface FrameLayout {
  blocks: BlockAt[];
  blockMax: number;
  contentSize: number | undefined;
  /** Independent blocks, no checksums, no dictionary: decodable here block by block. */
  plainBlocks: boolean;
  /** The most the frame can decode to, from its block sizes. */
  plainBound: number;
}

/** The structure of the single frame that `frame` must be exactly: header, blocks, end. */
function frameLayout(frame: Buffer): FrameLayout {
  if (frame.length < 7) throw new Lz4FrameError(`${frame.length} bytes are too few for an LZ4 frame`);
  const magic = frame.readUInt32LE(0);
  if (magic !== FRAME_MAGIC) throw new Lz4FrameError(`it does not start with the LZ4 frame magic (0x${magic.toString(16).padStart(8, '0')})`);
  const flg = frame[4]!;
  const bd = frame[5]!;
  if ((flg & FLG_VERSION_MASK) !== FLG_VERSION_01) throw new Lz4FrameError(`its version is ${flg >> 6}, not 1`);
  if (flg & FLG_RESERVED || bd & BD_RESERVED) throw new Lz4FrameError('a reserved bit of its header is set');
  const blockMax = BLOCK_MAX_BY_ID.get(bd >> 4);
  if (blockMax === undefined) throw new Lz4FrameError(`its block size id ${bd >> 4} is not one of 4–7`);
  const descriptorEnd = 6 + (flg & FLG_CONTENT_SIZE ? 8 : 0) + (flg & FLG_DICTIONARY_ID ? 4 : 0);
  if (frame.length < descriptorEnd + 1) throw new Lz4FrameError('it ends inside its header');
  if (frame[descriptorEnd] !== headerChecksum(frame.subarray(4, descriptorEnd))) throw new Lz4FrameError('its header checksum does not match');
  let contentSize: number | undefined;
  if (flg & FLG_CONTENT_SIZE) {
    const high = frame.readUInt32LE(10);
    if (high > 0x1f_ffff) throw new Lz4FrameError(`it declares an absurd content size (${frame.readBigUInt64LE(6)} bytes)`);
    contentSize = high * 0x1_0000_0000 + frame.readUInt32LE(6);
  }
  const blockChecksum = (flg & FLG_BLOCK_CHECKSUM) !== 0;
  const blocks: BlockAt[] = [];
  let plainBound = 0;
  let pos = descriptorEnd + 1;
  for (;;) {
    if (frame.length < pos + SIZE_WORD) throw new Lz4FrameError(`it ends at byte ${frame.length}, inside a block header or before its end mark`);
    const word = frame.readUInt32LE(pos);
    pos += SIZE_WORD;
    if (word === 0) break;
    const size = word & ~BLOCK_STORED;
    const stored = word >= BLOCK_STORED;
    if (size > blockMax) throw new Lz4FrameError(`its block at byte ${pos - SIZE_WORD} is ${size} bytes, more than the ${blockMax} its header allows`);
    if (frame.length < pos + size + (blockChecksum ? 4 : 0)) throw new Lz4FrameError(`it ends at byte ${frame.length}, inside the block at byte ${pos - SIZE_WORD}`);
    blocks.push({ at: pos, size, stored });
    plainBound += stored ? size : blockMax;
    pos += size + (blockChecksum ? 4 : 0);
  }
  if (flg & FLG_CONTENT_CHECKSUM) pos += 4;
  if (frame.length < pos) throw new Lz4FrameError('it ends inside its content checksum');
  if (frame.length > pos) throw new Lz4FrameError(`${frame.length - pos} bytes follow its end (one frame is expected)`);
  const plainBlocks = (flg & (FLG_INDEPENDENT_BLOCKS | FLG_BLOCK_CHECKSUM | FLG_CONTENT_CHECKSUM | FLG_DICTIONARY_ID)) === FLG_INDEPENDENT_BLOCKS;
  return { blocks, blockMax, contentSize, plainBlocks, plainBound };
}

/** Where a compressed block is put behind the size prefix lz4-napi's block decoder reads; reused. */
const scratch = Buffer.allocUnsafe(SIZE_PREFIX + LZ4_BLOCK_BYTES);

function decodeBlock(frame: Buffer, block: BlockAt, blockMax: number): Buffer {
  const length = SIZE_PREFIX + block.size;
  const input = length <= scratch.length ? scratch : Buffer.allocUnsafe(length);
  // The prefix is the most the block may decode to (its decoder fails past it), not its size.
  input.writeUInt32LE(blockMax, 0);
  frame.copy(input, SIZE_PREFIX, block.at, block.at + block.size);
  try {
    return uncompressSync(input.subarray(0, length));
  } catch (err) {
    throw new Lz4FrameError(`its block at byte ${block.at - SIZE_WORD} does not decode: ${(err as Error).message}`);
  }
}

/**
 * The bytes of the single LZ4 frame `frame`, which must be nothing more, in pieces (a
 * block's each, or the whole frame's). A frame with independent blocks and no checksums
 * (kiln's) is decoded here, synchronously; a piece may share memory with `frame` (a block
 * stored as it is). Any other frame goes to lz4-napi's decoder on the thread pool (a
 * promise). Throws (or rejects with) an Lz4FrameError for a malformed frame or one that may
 * decode to more than `maxPlain` bytes.
 */
export function decompressLz4FrameParts(frame: Uint8Array, maxPlain = MAX_FRAME_PLAIN_BYTES): Buffer[] | Promise<Buffer[]> {
  const bytes = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const layout = frameLayout(bytes);
  if (layout.plainBound > maxPlain) throw new Lz4FrameError(`it may decode to ${layout.plainBound} bytes; at most ${maxPlain} are taken in one frame`);
  if (!layout.plainBlocks) {
    return decompressFrame(bytes).then(
      (plain) => checkContentSize(plain.length, layout.contentSize, [plain]),
      (err: unknown) => {
        throw new Lz4FrameError((err as Error).message);
      },
    );
  }
  const parts: Buffer[] = [];
  let total = 0;
  for (const block of layout.blocks) {
    const part = block.stored ? bytes.subarray(block.at, block.at + block.size) : decodeBlock(bytes, block, layout.blockMax);
    total += part.length;
    parts.push(part);
  }
  return checkContentSize(total, layout.contentSize, parts);
}

/** decompressLz4FrameParts, the pieces joined (a single piece is not copied). */
export function decompressLz4Frame(frame: Uint8Array, maxPlain = MAX_FRAME_PLAIN_BYTES): Buffer | Promise<Buffer> {
  const parts = decompressLz4FrameParts(frame, maxPlain);
  return Array.isArray(parts) ? join(parts) : parts.then(join);
}

const join = (parts: Buffer[]): Buffer => (parts.length === 1 ? parts[0]! : Buffer.concat(parts));

function checkContentSize(size: number, contentSize: number | undefined, parts: Buffer[]): Buffer[] {
  if (contentSize !== undefined && size !== contentSize) throw new Lz4FrameError(`it decodes to ${size} bytes, not the ${contentSize} its header declares`);
  return parts;
}
