// The narinfo the cache serves for a stored path: one text that Nix and Guix both read,
// in guix publish's layout (the signed fields, `Signature:`, then one URL block per
// compression), with a Nix `Sig:` among the signed fields and a Guix `Signature:` over
// them. Neither signature covers the URL blocks, so adding a compression re-signs nothing.
//
// The blocks' order matters to Nix only: its parser (nar-info.cc) keeps the last value of
// each field, so it downloads the last block, and every block carries all four fields so
// that it never mixes two. The uploaded LZ4 file goes last (Nix, and kiln's own agents,
// read it). Guix collects every block, drops the compressions it cannot read (LZ4
// among them) and picks among the rest (narinfo-preferred-uris in guix/narinfo.scm).
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

/** A NAR file of the path in another compression (a nar_files row). */
export interface StoredFile {
  fileName: string;
  compression: string;
  fileHash: string;
  fileSize: number;
}

const block = (f: StoredFile) => ({ url: `nar/${f.fileName}`, compression: f.compression, fileHash: f.fileHash, fileSize: f.fileSize });

/** `ca`: the content address of a fixed-output derivation's output (see content-addresses.ts). */
export function narInfoText(stored: StoredPath, keys: CacheKeys, others: readonly StoredFile[] = [], ca?: string): string {
  const unsigned: NarInfo = {
    storePath: stored.path,
    // In one order whoever renders it (the publish hook, or a request before it ran).
    files: [...[...others].sort((a, b) => (a.compression < b.compression ? -1 : 1)).map(block), block(stored)],
    narHash: stored.narHash,
    narSize: stored.narSize,
    references: stored.references.map(baseName).sort(),
    deriver: stored.deriver ? baseName(stored.deriver) : undefined,
    sigs: [],
    ...(ca !== undefined ? { ca } : {}),
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

  /** `key` names the path and its files: a path collected and uploaded again is another entry. */
  get(key: string, render: () => string): string {
    const hit = this.entries.get(key);
    if (hit !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const text = render();
    this.entries.set(key, text);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    return text;
  }
}
