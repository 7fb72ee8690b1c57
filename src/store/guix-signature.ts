// Guix-style narinfo signatures: `Signature: 1;<host>;<base64>`, where the base64 holds
// the printed `(signature (data …) (sig-val …) (public-key …))` s-expression over the
// SHA-256 of the narinfo text above the Signature line — what `guix publish` writes
// and `guix substitute` checks (guix/scripts/publish.scm, guix/narinfo.scm, guix/pki.scm).
import { createHash } from 'node:crypto';
import { sign, verify, type EcdsaSignature } from './ed25519-ecdsa.js';
import { bigintFromBigEndian, bigintToBigEndian } from './ed25519-point.js';
import { guixPublicKeyFromSexp, GuixKeyError, type GuixPublicKey, type GuixSecretKey } from './guix-key.js';
import {
  atom,
  atomText,
  findToken,
  isAtom,
  parseSexp,
  printSexp,
  sexpEqual,
  sexpTextFromUtf8,
  sexpTextToUtf8,
  SexpError,
  type Sexp,
} from './sexp.js';

export class GuixSignatureError extends Error {
  override name = 'GuixSignatureError';
}

/** The outcomes Guix's `signature-case` tells apart, plus a narinfo with no usable signature. */
export type GuixSignatureStatus =
  | 'valid-signature'
  | 'invalid-signature'
  | 'hash-mismatch'
  | 'unauthorized-key'
  | 'corrupt-signature'
  | 'unsigned';

// Guix treats a narinfo as unsigned unless these fields are above its Signature line.
const MANDATORY_SIGNED_FIELDS = ['StorePath', 'NarHash', 'References'];

/** libgcrypt's `%M`: the unsigned value in as few big-endian bytes as it takes. */
function unsignedMpi(value: bigint): Uint8Array {
  return bigintToBigEndian(value, Math.max(1, Math.ceil(value.toString(16).length / 2)));
}

/** `(data (flags rfc6979) (hash sha256 #…#))`, as guile-gcrypt's bytevector->hash-data builds it. */
export function hashData(sha256: Uint8Array): Sexp {
  return [atom('data'), [atom('flags'), atom('rfc6979')], [atom('hash'), atom('sha256'), sha256]];
}

/** The signature s-expression Guix's `signature-sexp` builds for a SHA-256 hash. */
export function signHash(sha256: Uint8Array, key: GuixSecretKey): Sexp {
  const { r, s } = sign(key.d, sha256, 'sha256');
  const sigVal: Sexp = [atom('sig-val'), [atom('ecdsa'), [atom('r'), unsignedMpi(r)], [atom('s'), unsignedMpi(s)]]];
  return [atom('signature'), hashData(sha256), sigVal, key.publicKey.sexp];
}

/** The value of the `Signature:` field for `signedText`, the narinfo lines above it. */
export function signNarInfoText(signedText: string, key: GuixSecretKey, hostname: string): string {
  if (hostname.includes(';') || /[\r\n]/.test(hostname)) {
    throw new GuixSignatureError(`host name "${hostname}" cannot appear in a Signature field`);
  }
  const digest = new Uint8Array(createHash('sha256').update(signedText, 'utf8').digest());
  const printed = printSexp(signHash(digest, key));
  return `1;${hostname};${Buffer.from(sexpTextToUtf8(printed)).toString('base64')}`;
}

/** Reads a `Signature:` field value the way `narinfo-signature->canonical-sexp` does. */
export function parseSignatureField(value: string): { hostname: string; signature: Sexp } {
  const parts = value.split(';');
  if (parts.length !== 3) throw new GuixSignatureError(`Signature field has ${parts.length} ";"-separated parts, not 3`);
  const [version, hostname, body] = parts as [string, string, string];
  if (!/^\s*\d+\s*$/.test(version) || Number(version) !== 1) {
    throw new GuixSignatureError(`unsupported signature version "${version}"`);
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
    throw new GuixSignatureError('Signature field does not end in base64');
  }
  try {
    return { hostname, signature: parseSexp(sexpTextFromUtf8(Buffer.from(body, 'base64'))) };
  } catch (cause) {
    if (cause instanceof SexpError) throw new GuixSignatureError(`signature is not a valid s-expression: ${cause.message}`, { cause });
    throw cause;
  }
}

function nthAtom(list: readonly Sexp[] | undefined, index: number): Uint8Array | undefined {
  const item = list?.[index];
  return item !== undefined && isAtom(item) ? item : undefined;
}

/**
 * What libgcrypt's `gcry_pk_verify` decides for this signature expression: the ECDSA
 * signature in `sig-val` is good for the hash in `data` under the key in `public-key`.
 */
export function verifySignatureSexp(signature: Sexp): boolean {
  const data = findToken(signature, 'data');
  const sigVal = findToken(signature, 'sig-val');
  const subject = findToken(signature, 'public-key');
  if (!data || !sigVal || !subject) return false;

  const flags = findToken(data, 'flags');
  const flagNames = flags ? flags.slice(1).filter(isAtom).map(atomText) : [];
  // Without rfc6979 (or raw) libgcrypt refuses a (hash …) element for ECDSA.
  if (!flagNames.includes('rfc6979') && !flagNames.includes('raw')) return false;
  const hash = findToken(data, 'hash');
  const algorithm = nthAtom(hash, 1);
  const value = nthAtom(hash, 2);
  if (!algorithm || !value || !['sha256', 'sha384', 'sha512'].includes(atomText(algorithm))) return false;

  const ecdsa = findToken(sigVal, 'ecdsa');
  const r = nthAtom(findToken(ecdsa ?? [], 'r'), 1);
  const s = nthAtom(findToken(ecdsa ?? [], 's'), 1);
  if (!r || !s) return false;

  let key: GuixPublicKey;
  try {
    key = guixPublicKeyFromSexp(subject);
  } catch (error) {
    if (error instanceof GuixKeyError) return false;
    throw error;
  }
  const rs: EcdsaSignature = { r: bigintFromBigEndian(r), s: bigintFromBigEndian(s) };
  return verify(key.point, value, rs);
}

function fieldNames(text: string): string[] {
  return text
    .split('\n')
    .map((line) => /^([^:\s]+):/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined);
}

function signatureFieldValue(text: string): string | undefined {
  const line = text.split('\n').find((l) => l.startsWith('Signature:'));
  return line?.slice('Signature:'.length).trim();
}

/**
 * Judges a narinfo's `Signature:` as `guix substitute` does (valid-narinfo?): the hash
 * is over the exact text before the first "Signature:", the signing key must be one of
 * `authorized` (compared as whole s-expressions, like Guix's ACL), and the signature
 * must verify. `text` must be the narinfo as served, not a re-rendering of it.
 */
export function verifyNarInfoSignature(text: string, authorized: readonly GuixPublicKey[]): GuixSignatureStatus {
  const index = text.indexOf('Signature:');
  if (index < 0) return 'unsigned';
  const above = text.slice(0, index);
  const signed = new Set(fieldNames(above));
  if (!MANDATORY_SIGNED_FIELDS.every((f) => signed.has(f))) return 'unsigned';
  const value = signatureFieldValue(text);
  if (value === undefined) return 'unsigned';

  let signature: Sexp;
  try {
    signature = parseSignatureField(value).signature;
  } catch (error) {
    if (error instanceof GuixSignatureError) return 'corrupt-signature';
    throw error;
  }
  const subject = findToken(signature, 'public-key');
  const data = findToken(signature, 'data');
  if (!subject || !data) return 'corrupt-signature';
  if (!authorized.some((key) => sexpEqual(key.sexp, subject))) return 'unauthorized-key';
  const signedHash = nthAtom(findToken(data, 'hash'), 2);
  const digest = createHash('sha256').update(above, 'utf8').digest();
  if (!signedHash || Buffer.compare(signedHash, digest) !== 0) return 'hash-mismatch';
  return verifySignatureSexp(signature) ? 'valid-signature' : 'invalid-signature';
}
