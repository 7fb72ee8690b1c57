// The narinfo the cache serves for a stored path: one text that Nix and Guix both read,
// in guix publish's layout (the signed fields, `Signature:`, then the URL block), with
// a Nix `Sig:` among the signed fields and a Guix `Signature:` over them.
import { signNarInfoText } from '../store/guix-signature.js';
import { renderNarInfo, renderSignedPart, type NarInfo } from '../store/narinfo.js';
import { signNarInfo } from '../store/nix-signature.js';
import type { CacheKeys } from './cache-keys.js';

export interface StoredPath {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  deriver: string;
  fileName: string;
  compression: string;
  fileHash: string;
  fileSize: number;
}

const baseName = (p: string) => p.slice(p.lastIndexOf('/') + 1);

export function narInfoText(stored: StoredPath, keys: CacheKeys): string {
  const unsigned: NarInfo = {
    storePath: stored.path,
    files: [{ url: `nar/${stored.fileName}`, compression: stored.compression, fileHash: stored.fileHash, fileSize: stored.fileSize }],
    narHash: stored.narHash,
    narSize: stored.narSize,
    references: stored.references.map(baseName).sort(),
    deriver: stored.deriver ? baseName(stored.deriver) : undefined,
    sigs: [],
    extra: [],
  };
  const info = signNarInfo(unsigned, keys.nix);
  const signature = signNarInfoText(renderSignedPart(info, 'guix'), keys.guix, keys.hostname);
  return renderNarInfo({ ...info, signature }, 'guix');
}

/** A small LRU of rendered narinfos: signing costs milliseconds, lookups come in bursts. */
export class NarInfoCache {
  private readonly entries = new Map<string, string>();
  constructor(private readonly max = 10_000) {}

  get(path: string, render: () => string): string {
    const hit = this.entries.get(path);
    if (hit !== undefined) {
      this.entries.delete(path);
      this.entries.set(path, hit);
      return hit;
    }
    const text = render();
    this.entries.set(path, text);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    return text;
  }
}
