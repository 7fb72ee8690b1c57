// Which hash parts the cache holds, in memory, so that a narinfo request for a path the
// cache lacks (most of what clients ask) is answered without the database. Each hash part
// (32 Nix base32 characters, 160 bits) is packed into five 32-bit words, the words of all
// paths in one sorted Uint32Array: 20 bytes a path, found by binary search. The alphabet
// is in ASCII order, so the packed order is the strings' order.
//
// Changes go first into two small sets (added, removed) that lookups consult before the
// array; once they hold more than a fraction of it they are merged in, one pass over the
// array, so that a farm's stream of commits never moves the whole array per path.
import { BASE32_ALPHABET } from '../store/base32.js';

const WORDS = 5;
const DIGIT = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE32_ALPHABET.length; i++) DIGIT[BASE32_ALPHABET.charCodeAt(i)] = i;

/** Packs a hash part into `out` at `at` (five words); false when it is not 32 base32 characters. */
function pack(hashPart: string, out: Uint32Array, at: number): boolean {
  if (hashPart.length !== 32) return false;
  // 32 characters of 5 bits: 6.4 a word, so words are filled across character boundaries.
  let acc = 0;
  let bits = 0;
  let w = at;
  for (let i = 0; i < 32; i++) {
    const c = hashPart.charCodeAt(i);
    const d = c < 128 ? DIGIT[c]! : -1;
    if (d < 0) return false;
    // acc holds < 32 pending bits; take what fits, carry the rest.
    const room = 32 - bits;
    if (room >= 5) {
      acc = (acc << 5) | d;
      bits += 5;
      if (bits === 32) {
        out[w++] = acc >>> 0;
        acc = 0;
        bits = 0;
      }
    } else {
      const carry = 5 - room;
      out[w++] = ((acc << room) | (d >>> carry)) >>> 0;
      acc = d & ((1 << carry) - 1);
      bits = carry;
    }
  }
  return true;
}

function compareAt(a: Uint32Array, i: number, b: Uint32Array, j: number): number {
  for (let k = 0; k < WORDS; k++) {
    const x = a[i + k]!;
    const y = b[j + k]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

export class HashPartIndex {
  /** Packed, sorted, without duplicates: `count` paths of five words. */
  private words: Uint32Array;
  private count: number;
  /** Since the last merge: present though not in `words`, and absent though in it. */
  private readonly added = new Set<string>();
  private readonly removed = new Set<string>();
  private readonly probe = new Uint32Array(WORDS);

  private constructor(words: Uint32Array, count: number) {
    this.words = words;
    this.count = count;
  }

  static empty(): HashPartIndex {
    return new HashPartIndex(new Uint32Array(0), 0);
  }

  /** From hash parts in any order; malformed ones (never stored) are skipped. */
  static from(hashParts: string[]): HashPartIndex {
    const sorted = hashParts.slice().sort();
    const words = new Uint32Array(sorted.length * WORDS);
    let count = 0;
    for (const h of sorted) {
      if (!pack(h, words, count * WORDS)) continue;
      if (count > 0 && compareAt(words, (count - 1) * WORDS, words, count * WORDS) === 0) continue;
      count++;
    }
    return new HashPartIndex(count * WORDS === words.length ? words : words.slice(0, count * WORDS), count);
  }

  /** Paths held. */
  get size(): number {
    let inBase = this.count - this.removed.size;
    inBase += this.added.size;
    return inBase;
  }

  /** Bytes the packed array takes (the sets of recent changes come on top, bounded by the merge). */
  get bytes(): number {
    return this.words.byteLength;
  }

  has(hashPart: string): boolean {
    if (this.added.has(hashPart)) return true;
    if (this.removed.has(hashPart)) return false;
    return this.inWords(hashPart);
  }

  add(hashPart: string): void {
    if (this.removed.delete(hashPart)) return;
    if (!this.inWords(hashPart)) this.added.add(hashPart);
    this.mergeIfLarge();
  }

  remove(hashPart: string): void {
    if (this.added.delete(hashPart)) return;
    if (this.inWords(hashPart)) this.removed.add(hashPart);
    this.mergeIfLarge();
  }

  private inWords(hashPart: string): boolean {
    if (!pack(hashPart, this.probe, 0)) return false;
    let lo = 0;
    let hi = this.count - 1;
    const words = this.words;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareAt(words, mid * WORDS, this.probe, 0);
      if (c === 0) return true;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  private mergeIfLarge(): void {
    const pending = this.added.size + this.removed.size;
    if (pending > 1024 && pending > this.count / 64) this.merge();
  }

  /** Folds the recent changes into the packed array: one pass. */
  merge(): void {
    const added = [...this.added].sort();
    const incoming = new Uint32Array(added.length * WORDS);
    added.forEach((h, i) => pack(h, incoming, i * WORDS));
    const gone = new Uint32Array(this.removed.size * WORDS);
    [...this.removed].sort().forEach((h, i) => pack(h, gone, i * WORDS));
    const out = new Uint32Array((this.count - this.removed.size + added.length) * WORDS);
    let a = 0;
    let b = 0;
    let g = 0;
    let n = 0;
    const goneCount = this.removed.size;
    while (a < this.count || b < added.length) {
      let fromBase: boolean;
      if (a >= this.count) fromBase = false;
      else if (b >= added.length) fromBase = true;
      else fromBase = compareAt(this.words, a * WORDS, incoming, b * WORDS) < 0;
      if (fromBase) {
        // Removed entries are a sorted subset of the base: skip them as they come.
        if (g < goneCount && compareAt(this.words, a * WORDS, gone, g * WORDS) === 0) {
          g++;
          a++;
          continue;
        }
        out.set(this.words.subarray(a * WORDS, a * WORDS + WORDS), n * WORDS);
        a++;
      } else {
        out.set(incoming.subarray(b * WORDS, b * WORDS + WORDS), n * WORDS);
        b++;
      }
      n++;
    }
    this.words = out;
    this.count = n;
    this.added.clear();
    this.removed.clear();
  }
}
