// ECDSA over the Ed25519 curve, as libgcrypt computes it for a key made with
// `(genkey (ecdsa (curve Ed25519) (flags rfc6979)))` — the key `guix archive
// --generate-key` makes. This is not RFC 8032 EdDSA: r = x(k·G) mod n and
// s = k⁻¹(h + r·d) mod n, with k derived from the key and the hash by RFC 6979, so the
// same key and hash give exactly the signature libgcrypt gives.
import { createHmac, randomBytes } from 'node:crypto';
import {
  Fn,
  N,
  add,
  bigintFromBigEndian,
  bigintToBigEndian,
  isIdentity,
  multiply,
  multiplyBase,
  toAffine,
  type Point,
} from './ed25519-point.js';

export class Ed25519EcdsaError extends Error {
  override name = 'Ed25519EcdsaError';
}

export interface EcdsaSignature {
  readonly r: bigint;
  readonly s: bigint;
}

/** Hash algorithms libgcrypt knows by these names, with their digest lengths. */
const HASHES: Record<string, number> = { sha256: 32, sha384: 48, sha512: 64 };

const QBITS = BigInt(N.toString(2).length); // 253
const QBYTES = Math.ceil(Number(QBITS) / 8); // 32

/** libgcrypt's `_gcry_dsa_normalize_hash`: the hash as an integer, cut to n's bit length. */
export function hashToInteger(hash: Uint8Array): bigint {
  const bits = BigInt(hash.length * 8);
  const h = bigintFromBigEndian(hash);
  return bits > QBITS ? h >> (bits - QBITS) : h;
}

/**
 * A secret scalar as libgcrypt's key generation draws it for the Ed25519 curve: 32
 * random bytes, top bit cleared, next bit set, low 3 bits cleared (the "clamping" that
 * nist_generate_key keeps for this curve even in ECDSA mode). It is larger than n.
 */
export function generateSecretScalar(): bigint {
  const bytes = randomBytes(32);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  bytes[31] = bytes[31]! & 0xf8;
  return bigintFromBigEndian(bytes);
}

export function publicPoint(d: bigint): Point {
  if (d <= 0n) throw new Ed25519EcdsaError('secret scalar must be positive');
  return multiplyBase(d);
}

function hmac(algorithm: string, key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac(algorithm, key);
  for (const part of parts) h.update(part);
  return new Uint8Array(h.digest());
}

/**
 * k for the `attempt`-th try (counting from 0), per RFC 6979 §3.2 as libgcrypt's
 * `_gcry_dsa_gen_rfc6979_k` implements it. Two libgcrypt details matter for bit-exact
 * results: the secret goes in unreduced (an Ed25519 scalar is above n), and each retry
 * continues the HMAC chain rather than starting over.
 */
export function rfc6979Nonce(d: bigint, hash: Uint8Array, algorithm: string, attempt = 0): bigint {
  const hlen = HASHES[algorithm];
  if (hlen === undefined) throw new Ed25519EcdsaError(`unsupported hash algorithm "${algorithm}"`);
  if (hash.length !== hlen) throw new Ed25519EcdsaError(`a ${algorithm} hash is ${hlen} bytes, not ${hash.length}`);
  let z1 = hashToInteger(hash);
  if (z1 >= N) z1 -= N;
  const x = bigintToBigEndian(d, QBYTES);
  const h1 = bigintToBigEndian(z1, QBYTES);

  let V: Uint8Array = new Uint8Array(hlen).fill(1);
  let K: Uint8Array = new Uint8Array(hlen);
  K = hmac(algorithm, K, V, Uint8Array.of(0), x, h1);
  V = hmac(algorithm, K, V);
  K = hmac(algorithm, K, V, Uint8Array.of(1), x, h1);
  V = hmac(algorithm, K, V);

  let extra = attempt;
  for (;;) {
    let t = new Uint8Array(0);
    while (BigInt(t.length * 8) < QBITS) {
      V = hmac(algorithm, K, V);
      t = Uint8Array.from([...t, ...V]);
    }
    const tbits = BigInt(t.length * 8);
    let k = bigintFromBigEndian(t);
    if (tbits > QBITS) k >>= tbits - QBITS;
    if (k > 0n && k < N && extra === 0) return k;
    if (k > 0n && k < N) extra--;
    K = hmac(algorithm, K, V, Uint8Array.of(0));
    V = hmac(algorithm, K, V);
  }
}

/** Signs a hash made with `algorithm` (the name in the signed `(hash …)` element). */
export function sign(d: bigint, hash: Uint8Array, algorithm: string): EcdsaSignature {
  const h = hashToInteger(hash);
  // libgcrypt retries with the next RFC 6979 nonce when r or s is zero; the odds of
  // that are about 2^-252, but the retry order is what keeps the result reproducible.
  for (let attempt = 0; ; attempt++) {
    const k = rfc6979Nonce(d, hash, algorithm, attempt);
    const r = Fn.create(toAffine(multiplyBase(k)).x);
    if (r === 0n) continue;
    const s = Fn.mul(Fn.inv(k), Fn.add(Fn.create(h), Fn.mul(r, Fn.create(d))));
    if (s !== 0n) return { r, s };
  }
}

export function verify(q: Point, hash: Uint8Array, signature: EcdsaSignature): boolean {
  const { r, s } = signature;
  if (r <= 0n || r >= N || s <= 0n || s >= N) return false;
  const w = Fn.inv(s);
  const u1 = Fn.mul(Fn.create(hashToInteger(hash)), w);
  const u2 = Fn.mul(r, w);
  const point = add(multiplyBase(u1), multiply(u2, q));
  if (isIdentity(point)) return false;
  return Fn.create(toAffine(point).x) === r;
}
