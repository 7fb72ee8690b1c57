// Guix signing keys: the `signing-key.sec`/`signing-key.pub` files that
// `guix archive --generate-key` writes (libgcrypt s-expressions for an ECDSA key on the
// Ed25519 curve), read, written byte-identically, and generated.
import { decodePoint, encodePoint, bigintFromBigEndian, type Point } from './ed25519-point.js';
import { generateSecretScalar, publicPoint } from './ed25519-ecdsa.js';
import {
  atom,
  atomText,
  findToken,
  isAtom,
  parseSexp,
  printSexp,
  sexpTextFromUtf8,
  sexpTextToUtf8,
  SexpError,
  type Sexp,
} from './sexp.js';

export class GuixKeyError extends Error {
  override name = 'GuixKeyError';
}

export interface GuixPublicKey {
  /** The `(public-key …)` expression as written, which Guix's ACL compares whole. */
  readonly sexp: Sexp;
  readonly point: Point;
}

export interface GuixSecretKey {
  readonly sexp: Sexp;
  readonly d: bigint;
  readonly publicKey: GuixPublicKey;
}

/** The MPI bytes libgcrypt prints for `%m`: minimal two's complement, big-endian. */
function mpiBytes(value: bigint): Uint8Array {
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (Number.parseInt(hex.slice(0, 2), 16) & 0x80) hex = `00${hex}`;
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

function ecc(extra: Sexp[]): Sexp {
  return [atom('ecc'), [atom('curve'), atom('Ed25519')], ...extra];
}

/** A key pair as libgcrypt's genkey returns it for Guix's key parameters. */
export function guixKeyFromSecret(d: bigint): GuixSecretKey {
  const q = encodePoint(publicPoint(d));
  const publicSexp: Sexp = [atom('public-key'), ecc([[atom('q'), q]])];
  const secretSexp: Sexp = [atom('private-key'), ecc([[atom('q'), q], [atom('d'), mpiBytes(d)]])];
  return { sexp: secretSexp, d, publicKey: { sexp: publicSexp, point: decodePoint(q) } };
}

export function generateGuixKey(): GuixSecretKey {
  return guixKeyFromSecret(generateSecretScalar());
}

function field(key: readonly Sexp[], name: string, what: string): Uint8Array {
  const found = key.find((e) => !isAtom(e) && e[0] !== undefined && isAtom(e[0]) && atomText(e[0]) === name);
  const value = found && !isAtom(found) ? found[1] : undefined;
  if (value === undefined || !isAtom(value)) throw new GuixKeyError(`${what} has no (${name} …) value`);
  return value;
}

// Checks the parts of a key that decide how it signs: an ECDSA key on Ed25519, the only
// kind Guix has made since libgcrypt 1.6 (older RSA keys and EdDSA keys are refused).
function eccParams(sexp: Sexp, kind: 'public-key' | 'private-key'): readonly Sexp[] {
  const head = isAtom(sexp) ? undefined : sexp[0];
  if (isAtom(sexp) || head === undefined || !isAtom(head) || atomText(head) !== kind) {
    throw new GuixKeyError(`expected a (${kind} …) expression`);
  }
  const algorithm = sexp[1];
  if (algorithm === undefined || isAtom(algorithm) || algorithm[0] === undefined || !isAtom(algorithm[0])) {
    throw new GuixKeyError(`${kind} has no algorithm list`);
  }
  const name = atomText(algorithm[0]);
  if (name !== 'ecc' && name !== 'ecdsa') throw new GuixKeyError(`${kind} uses "${name}"; kiln supports Guix's Ed25519 ECDSA keys only`);
  const curve = atomText(field(algorithm, 'curve', kind));
  if (curve !== 'Ed25519') throw new GuixKeyError(`${kind} is on curve "${curve}", not Ed25519`);
  const flags = findToken(algorithm, 'flags');
  if (flags?.some((f) => isAtom(f) && atomText(f) === 'eddsa')) {
    throw new GuixKeyError(`${kind} has (flags eddsa): an EdDSA key signs differently from Guix's ECDSA keys`);
  }
  return algorithm;
}

export function guixPublicKeyFromSexp(sexp: Sexp): GuixPublicKey {
  const params = eccParams(sexp, 'public-key');
  try {
    return { sexp, point: decodePoint(field(params, 'q', 'public-key')) };
  } catch (cause) {
    if (cause instanceof GuixKeyError) throw cause;
    throw new GuixKeyError(`public-key has an invalid q: ${(cause as Error).message}`, { cause });
  }
}

export function guixSecretKeyFromSexp(sexp: Sexp): GuixSecretKey {
  const params = eccParams(sexp, 'private-key');
  const d = bigintFromBigEndian(field(params, 'd', 'private-key'));
  if (d === 0n) throw new GuixKeyError('private-key has d = 0');
  const derived = guixKeyFromSecret(d);
  const q = field(params, 'q', 'private-key');
  const fromFile = (() => {
    try {
      return encodePoint(decodePoint(q));
    } catch (cause) {
      throw new GuixKeyError(`private-key has an invalid q: ${(cause as Error).message}`, { cause });
    }
  })();
  // A q that does not match d would make every signature unverifiable; say so now.
  const derivedQ = field(eccParams(derived.publicKey.sexp, 'public-key'), 'q', 'public-key');
  if (Buffer.compare(fromFile, derivedQ) !== 0) throw new GuixKeyError('private-key: q is not d·G');
  // The public half keeps every parameter but d, as libgcrypt's genkey writes the pair.
  const publicParams = params.filter((e) => isAtom(e) || e[0] === undefined || !isAtom(e[0]) || atomText(e[0]) !== 'd');
  return { sexp, d, publicKey: { sexp: [atom('public-key'), publicParams], point: decodePoint(q) } };
}

function parseKeyFile(bytes: Uint8Array): Sexp {
  try {
    return parseSexp(sexpTextFromUtf8(bytes));
  } catch (cause) {
    if (cause instanceof SexpError) throw new GuixKeyError(`key file: ${cause.message}`, { cause });
    throw cause;
  }
}

/** Reads `signing-key.pub`. */
export function parseGuixPublicKey(file: Uint8Array): GuixPublicKey {
  return guixPublicKeyFromSexp(parseKeyFile(file));
}

/** Reads `signing-key.sec`. */
export function parseGuixSecretKey(file: Uint8Array): GuixSecretKey {
  return guixSecretKeyFromSexp(parseKeyFile(file));
}

/** The bytes of `signing-key.pub` as `guix archive --generate-key` writes them. */
export function renderGuixPublicKey(key: GuixPublicKey): Uint8Array {
  return sexpTextToUtf8(printSexp(key.sexp));
}

/** The bytes of `signing-key.sec`. */
export function renderGuixSecretKey(key: GuixSecretKey): Uint8Array {
  return sexpTextToUtf8(printSexp(key.sexp));
}
