// Finding which store paths a file tree refers to, as Nix does (src/libutil/references.cc):
// scan its NAR for the 32-character hash parts of the candidate paths. A reference is
// only ever found by its hash part, so a path mentioned in any form (a string in a
// binary, a symlink target, a file name) counts.
import { BASE32_ALPHABET } from './base32.js';
import { HASH_PART_LENGTH, parseStorePath } from './store-path.js';

/** Each byte's value as a Nix base32 digit, or -1. */
const DIGIT = new Int8Array(256).fill(-1);
for (let i = 0; i < BASE32_ALPHABET.length; i++) DIGIT[BASE32_ALPHABET.charCodeAt(i)] = i;

/**
 * Scans a byte stream fed in chunks of any size for the hash parts of candidate store
 * paths. Finds the same ones however the stream is cut: the last bytes of each chunk are
 * searched again with the start of the next.
 */
export class ReferenceScanner {
  /** Candidate paths by hash part, until found. */
  private readonly wanted = new Map<string, string>();
  private readonly seen: string[] = [];
  /** Which pairs of first two digits some candidate starts with: most windows stop here. */
  private readonly starts = new Uint8Array(32 * 32);
  /** Up to HASH_PART_LENGTH - 1 bytes: the end of what was fed so far. */
  private tail = Buffer.alloc(0);

  /** `candidates` are full store paths. */
  constructor(candidates: Iterable<string>) {
    for (const path of candidates) {
      const { hashPart } = parseStorePath(path);
      this.wanted.set(hashPart, path);
      this.starts[DIGIT[hashPart.charCodeAt(0)]! * 32 + DIGIT[hashPart.charCodeAt(1)]!] = 1;
    }
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
   * Nix's search: every window of HASH_PART_LENGTH base32 characters is a possible
   * reference. A window's characters are checked from the right, so that a byte that is
   * not base32 lets the search jump past it; after a window that was all base32 only the
   * one new character needs checking, so long runs cost one check per byte.
   */
  private search(s: Buffer): void {
    let known = 0; // how many characters at the start of the window are known to be base32
    for (let i = 0; i + HASH_PART_LENGTH <= s.length; ) {
      let bad = -1;
      for (let j = HASH_PART_LENGTH - 1; j >= known; j--) {
        if (DIGIT[s[i + j]!]! < 0) {
          bad = j;
          break;
        }
      }
      if (bad >= 0) {
        i += bad + 1;
        known = 0;
        continue;
      }
      if (this.starts[DIGIT[s[i]!]! * 32 + DIGIT[s[i + 1]!]!]) {
        const ref = s.toString('latin1', i, i + HASH_PART_LENGTH);
        const path = this.wanted.get(ref);
        if (path !== undefined) {
          this.wanted.delete(ref);
          this.seen.push(path);
        }
      }
      i++;
      known = HASH_PART_LENGTH - 1;
    }
  }
}
