// Finding which store paths a file tree refers to, as Nix does (src/libutil/references.cc):
// scan its NAR for the 32-character hash parts of the candidate paths. A reference is
// only ever found by its hash part, so a path mentioned in any form (a string in a
// binary, a symlink target, a file name) counts.
import { BASE32_ALPHABET } from './base32.js';
import { HASH_PART_LENGTH, parseStorePath } from './store-path.js';

const IS_BASE32 = new Uint8Array(256);
for (const c of BASE32_ALPHABET) IS_BASE32[c.charCodeAt(0)] = 1;

/**
 * Scans a byte stream fed in chunks of any size for the hash parts of candidate store
 * paths. Finds the same ones however the stream is cut: the last bytes of each chunk are
 * searched again with the start of the next.
 */
export class ReferenceScanner {
  /** Candidate paths by hash part, until found. */
  private readonly wanted = new Map<string, string>();
  private readonly seen: string[] = [];
  /** Up to HASH_PART_LENGTH - 1 bytes: the end of what was fed so far. */
  private tail = Buffer.alloc(0);

  /** `candidates` are full store paths. */
  constructor(candidates: Iterable<string>) {
    for (const path of candidates) this.wanted.set(parseStorePath(path).hashPart, path);
  }

  feed(chunk: Uint8Array): void {
    if (this.wanted.size === 0 || chunk.length === 0) return;
    const data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    // A hash part that straddles the cut: the tail and the first bytes of this chunk.
    if (this.tail.length > 0) this.search(Buffer.concat([this.tail, data.subarray(0, HASH_PART_LENGTH - 1)]));
    this.search(data);
    const keep = HASH_PART_LENGTH - 1;
    this.tail = data.length >= keep ? Buffer.from(data.subarray(data.length - keep)) : Buffer.concat([this.tail, data]).subarray(-keep);
  }

  /** The candidates found so far, sorted. */
  found(): string[] {
    return [...this.seen].sort();
  }

  /**
   * Nix's search: at each position check the window's characters from the right; a
   * character that is not base32 lets the window jump past it.
   */
  private search(s: Buffer): void {
    for (let i = 0; i + HASH_PART_LENGTH <= s.length; ) {
      let bad = -1;
      for (let j = HASH_PART_LENGTH - 1; j >= 0; j--) {
        if (!IS_BASE32[s[i + j]!]) {
          bad = j;
          break;
        }
      }
      if (bad >= 0) {
        i += bad + 1;
        continue;
      }
      const ref = s.toString('latin1', i, i + HASH_PART_LENGTH);
      const path = this.wanted.get(ref);
      if (path !== undefined) {
        this.wanted.delete(ref);
        this.seen.push(path);
      }
      i++;
    }
  }
}
