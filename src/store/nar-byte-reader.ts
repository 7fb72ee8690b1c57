// Reads exact byte counts from a stream of chunks cut anywhere, tracking the offset (for error
// messages) and hashing every byte it is given (to check a declared NAR hash).
import { createHash, type Hash } from 'node:crypto';
import { NarError } from './nar-format.js';

const EMPTY = Buffer.alloc(0);

export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export class ByteReader {
  private readonly it: AsyncIterator<Uint8Array> | Iterator<Uint8Array>;
  private chunk: Buffer = EMPTY;
  private pos = 0;
  /** Offset in the whole stream of the next byte `bytes`/`take` return. */
  offset = 0;
  /** Bytes received from the source so far (read or not). */
  received = 0;
  private readonly hash: Hash = createHash('sha256');

  constructor(source: ByteSource) {
    this.it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  }

  /**
   * Exactly `n` bytes. The buffer may share memory with the source's chunk: copy what must
   * outlive it. `what` and `path` name the field for the error if the stream ends first.
   */
  async bytes(n: number, what: string, path: string): Promise<Buffer> {
    const available = this.chunk.length - this.pos;
    if (available >= n) {
      const out = this.chunk.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      if (this.pos === this.chunk.length && !(await this.more())) {
        throw new NarError(`the NAR ends early: ${n - filled} more bytes expected for ${what}`, path, this.offset);
      }
      const k = Math.min(n - filled, this.chunk.length - this.pos);
      this.chunk.copy(out, filled, this.pos, this.pos + k);
      this.pos += k;
      this.offset += k;
      filled += k;
    }
    return out;
  }

  /** Yields `n` bytes as they arrive, in pieces that share memory with the source's chunks. */
  async *take(n: number, what: string, path: string): AsyncGenerator<Buffer, void, undefined> {
    let left = n;
    while (left > 0) {
      if (this.pos === this.chunk.length && !(await this.more())) {
        throw new NarError(`the NAR ends early: ${left} more bytes expected for ${what}`, path, this.offset);
      }
      const k = Math.min(left, this.chunk.length - this.pos);
      const piece = this.chunk.subarray(this.pos, this.pos + k);
      this.pos += k;
      this.offset += k;
      left -= k;
      yield piece;
    }
  }

  /** Whether the source has no byte left. */
  async atEnd(): Promise<boolean> {
    return this.pos === this.chunk.length && !(await this.more());
  }

  /** The SHA-256 of every byte received; call once, at the end. */
  digest(): Buffer {
    return this.hash.digest();
  }

  /** Lets the source go (closes a Readable, ends a generator) when reading stops early. */
  async close(): Promise<void> {
    await this.it.return?.();
  }

  private async more(): Promise<boolean> {
    for (;;) {
      const next = await this.it.next();
      if (next.done) return false;
      const value: unknown = next.value;
      if (!(value instanceof Uint8Array)) {
        throw new TypeError(`a NAR source must yield bytes (Buffer/Uint8Array), not ${typeof value === 'string' ? 'strings' : typeof value}`);
      }
      if (value.length === 0) continue;
      this.chunk = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      this.pos = 0;
      this.hash.update(this.chunk);
      this.received += this.chunk.length;
      return true;
    }
  }
}
