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

/** A path's stored signatures (store_paths' signature columns). */
export interface NarInfoSignatures {
  nixSignature: string;
  guixSignature: string;
  /** The CacheKeys.fingerprint of the keys that made them. */
  signatureKey: string;
}

/** The stored signature columns, as a row holds them before it is signed (all null). */
export interface MaybeSigned {
  nixSignature: string | null;
  guixSignature: string | null;
  signatureKey: string | null;
}

/** The fields both signatures cover, with no files and no signatures yet. */
function unsignedInfo(stored: Omit<StoredPath, 'fileName' | 'compression' | 'fileHash' | 'fileSize'>, files: NarInfo['files']): NarInfo {
  return {
    storePath: stored.path,
    files,
    narHash: stored.narHash,
    narSize: stored.narSize,
    references: stored.references.map(baseName).sort(),
    deriver: stored.deriver ? baseName(stored.deriver) : undefined,
    sigs: [],
    extra: [],
  };
}

/**
 * Signs a path's narinfo with the cache's keys: the Nix signature, then the Guix one over
 * the signed fields (the Sig line among them). Called when a path is committed and by
 * the background signer, never for a request; `signed` counts the calls (a metric).
 */
export function signNarInfoFields(
  stored: Omit<StoredPath, 'fileName' | 'compression' | 'fileHash' | 'fileSize'>,
  keys: CacheKeys,
): NarInfoSignatures {
  // Guix's signed part has no NAR blocks; the one here only satisfies the narinfo check.
  const info = signNarInfo(unsignedInfo(stored, [{ url: 'nar/not-signed', compression: 'none' }]), keys.nix);
  const guixSignature = signNarInfoText(renderSignedPart(info, 'guix'), keys.guix, keys.hostname);
  signatureCount.made++;
  return { nixSignature: info.sigs[0]!, guixSignature, signatureKey: keys.fingerprint };
}

/** Signatures made by this process (kiln_narinfo_signatures_total reads it). */
export const signatureCount = { made: 0 };

/**
 * The narinfo text of a signed path: no signing, only rendering. `ca`: a fixed output's
 * content address (content-addresses.ts), which neither signature covers, in Nix as here.
 */
export function narInfoText(stored: StoredPath & NarInfoSignatures, others: readonly StoredFile[] = [], ca?: string): string {
  // In one order whoever renders it (the publish hook, or a request before it ran).
  const files = [...[...others].sort((a, b) => (a.compression < b.compression ? -1 : 1)).map(block), block(stored)];
  const info = { ...unsignedInfo(stored, files), sigs: [stored.nixSignature], ...(ca !== undefined ? { ca } : {}) };
  return renderNarInfo({ ...info, signature: stored.guixSignature }, 'guix');
}

/** The row's signatures when the current keys made them; undefined means "not served yet". */
export function currentSignatures(row: MaybeSigned, keys: Pick<CacheKeys, 'fingerprint'>): NarInfoSignatures | undefined {
  const { nixSignature, guixSignature, signatureKey } = row;
  if (nixSignature === null || guixSignature === null || signatureKey !== keys.fingerprint) return undefined;
  return { nixSignature, guixSignature, signatureKey };
}
