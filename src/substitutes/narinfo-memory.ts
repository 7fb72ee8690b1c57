// The signed narinfo texts of the paths asked for lately, bounded by their bytes, so that
// a hit costs no database round trip. Entries are dropped when the store-path feed says
// their path changed (collected, uploaded again, published with new compressions).
export interface RememberedNarInfo {
  /** The signed text, as sent. */
  body: Buffer;
  /** When the path entered the cache: a new one gets the shorter TTL. */
  createdAtMs: number;
  /** The NAR files it names: a hit checks they are still there. */
  files: string[];
}

export class NarInfoMemory {
  private readonly entries = new Map<string, RememberedNarInfo>();
  private bytes = 0;
  constructor(private readonly maxBytes = 32 << 20) {}

  get(hashPart: string): RememberedNarInfo | undefined {
    const hit = this.entries.get(hashPart);
    if (hit === undefined) return undefined;
    this.entries.delete(hashPart);
    this.entries.set(hashPart, hit);
    return hit;
  }

  set(hashPart: string, entry: RememberedNarInfo): void {
    this.delete(hashPart);
    this.entries.set(hashPart, entry);
    this.bytes += entry.body.length;
    while (this.bytes > this.maxBytes) {
      const oldest = this.entries.keys().next().value!;
      this.delete(oldest);
    }
  }

  delete(hashPart: string): void {
    const had = this.entries.get(hashPart);
    if (!had) return;
    this.entries.delete(hashPart);
    this.bytes -= had.body.length;
  }
}
