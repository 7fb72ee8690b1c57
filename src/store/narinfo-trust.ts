// Whether a narinfo from a binary cache may be believed: it parses, describes the path
// asked for, and carries a signature by one of the keys trusted for that cache, in
// either style (Nix `Sig:` by a `name:base64` key, Guix `Signature:` by a sexp key).
import { parseGuixPublicKey, type GuixPublicKey } from './guix-key.js';
import { verifyNarInfoSignature } from './guix-signature.js';
import { parseNarInfo, type NarInfo } from './narinfo.js';
import { countValidSignatures, parseNixPublicKey, type NixPublicKey } from './nix-signature.js';

export interface TrustedKeys {
  nix: NixPublicKey[];
  guix: GuixPublicKey[];
}

export type NarInfoJudgement = { trusted: true; info: NarInfo } | { trusted: false; reason: string };

/**
 * Reads keys as operators write them: a Guix key is its `(public-key …)` s-expression
 * (what `guix archive --generate-key` writes to signing-key.pub), anything else a Nix
 * `name:base64` key. Throws an Error naming the key that is unusable.
 */
export function parseTrustedKeys(texts: readonly string[]): TrustedKeys {
  const keys: TrustedKeys = { nix: [], guix: [] };
  for (const text of texts) {
    const trimmed = text.trim();
    try {
      if (trimmed.startsWith('(')) keys.guix.push(parseGuixPublicKey(new TextEncoder().encode(trimmed)));
      else keys.nix.push(parseNixPublicKey(trimmed));
    } catch (err) {
      throw new Error(`public key ${JSON.stringify(trimmed.length > 60 ? `${trimmed.slice(0, 60)}…` : trimmed)}: ${(err as Error).message}`, { cause: err });
    }
  }
  return keys;
}

/** True for a key Nix itself can use in trusted-public-keys. */
export function isNixKeyText(text: string): boolean {
  return !text.trim().startsWith('(');
}

/**
 * Judges a narinfo as served (the exact text: Guix signs the bytes above `Signature:`)
 * for `storePath`. Never throws for what the cache sent: garbage is a reason, not a crash.
 */
export function judgeNarInfo(text: string, storePath: string, keys: TrustedKeys): NarInfoJudgement {
  let info: NarInfo;
  try {
    info = parseNarInfo(text);
  } catch (err) {
    return { trusted: false, reason: `not a narinfo: ${(err as Error).message}` };
  }
  if (info.storePath !== storePath) return { trusted: false, reason: `describes ${info.storePath}, not ${storePath}` };
  if (keys.nix.length > 0 && info.sigs.length > 0) {
    try {
      if (countValidSignatures(info, keys.nix) > 0) return { trusted: true, info };
    } catch (err) {
      return { trusted: false, reason: `its signature cannot be checked: ${(err as Error).message}` };
    }
  }
  if (keys.guix.length > 0 && info.signature !== undefined) {
    const status = verifyNarInfoSignature(text, keys.guix);
    if (status === 'valid-signature') return { trusted: true, info };
    return { trusted: false, reason: `its Guix signature is not trusted (${status})` };
  }
  const signers = info.sigs.map((s) => s.slice(0, s.indexOf(':'))).join(', ');
  if (info.sigs.length === 0 && info.signature === undefined) return { trusted: false, reason: 'it is not signed' };
  return { trusted: false, reason: `no valid signature by a trusted key (signed by ${signers || 'a Guix key'})` };
}
