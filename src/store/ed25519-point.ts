// Points of the Ed25519 twisted Edwards curve (-x² + y² = 1 + d·x²·y² over 2^255 - 19),
// in extended coordinates, and the point encodings libgcrypt reads. Guix's keys use
// this curve for ECDSA, which node:crypto does not offer, hence BigInt arithmetic.
//
// BigInt arithmetic is not constant-time (libgcrypt's is): someone who can time many of
// the coordinator's signing calls learns about the secret key. A deployment that fears
// such a local attacker should keep the signing key on a host of its own.

export class Ed25519PointError extends Error {
  override name = 'Ed25519PointError';
}

export const P = 2n ** 255n - 19n;
/** The order of the base point (the group the signatures work in). */
export const N = 2n ** 252n + 27742317777372353535851937790883648493n;
const D = mod(-121665n * invert(121666n, P), P);
const SQRT_M1 = pow(2n, (P - 1n) / 4n, P);

/** A point in extended coordinates: x = X/Z, y = Y/Z, x·y = T/Z. */
export interface Point {
  readonly X: bigint;
  readonly Y: bigint;
  readonly Z: bigint;
  readonly T: bigint;
}

export function mod(a: bigint, m: bigint): bigint {
  const r = a % m;
  return r < 0n ? r + m : r;
}

export function pow(base: bigint, exponent: bigint, m: bigint): bigint {
  let result = 1n;
  let b = mod(base, m);
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
  }
  return result;
}

/** Multiplicative inverse modulo a prime (P or N), by Fermat's little theorem. */
export function invert(a: bigint, m: bigint): bigint {
  if (mod(a, m) === 0n) throw new Ed25519PointError('zero has no inverse');
  return pow(a, m - 2n, m);
}

export const IDENTITY: Point = { X: 0n, Y: 1n, Z: 1n, T: 0n };

export const BASE: Point = fromAffine(
  15112221349535400772501151409588531511454012693041857206046113283949847762202n,
  46316835694926478169428394003475163141307993866256225615783033603165251855960n,
);

export function fromAffine(x: bigint, y: bigint): Point {
  return { X: x, Y: y, Z: 1n, T: mod(x * y, P) };
}

export function toAffine(p: Point): { x: bigint; y: bigint } {
  if (p.Z === 0n) throw new Ed25519PointError('point at infinity has no affine form');
  const zInv = invert(p.Z, P);
  return { x: mod(p.X * zInv, P), y: mod(p.Y * zInv, P) };
}

// "add-2008-hwcd-3" for a = -1: complete on this curve, so it also doubles.
export function add(p: Point, q: Point): Point {
  const a = mod((p.Y - p.X) * (q.Y - q.X), P);
  const b = mod((p.Y + p.X) * (q.Y + q.X), P);
  const c = mod(2n * D * p.T * q.T, P);
  const d = mod(2n * p.Z * q.Z, P);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return { X: mod(e * f, P), Y: mod(g * h, P), Z: mod(f * g, P), T: mod(e * h, P) };
}

export function multiply(scalar: bigint, p: Point): Point {
  if (scalar < 0n) throw new Ed25519PointError('negative scalar');
  let result = IDENTITY;
  let addend = p;
  for (let k = scalar; k > 0n; k >>= 1n) {
    if (k & 1n) result = add(result, addend);
    addend = add(addend, addend);
  }
  return result;
}

/**
 * Multiples of the base point for multiplyBase: row i holds j·16^i·BASE for j = 0..15.
 * Made on first use (a thousand additions, a few milliseconds) and kept.
 */
let baseTable: Point[][] | undefined;

function makeBaseTable(): Point[][] {
  const rows: Point[][] = [];
  let rowBase = BASE;
  for (let i = 0; i < 64; i++) {
    const row = [IDENTITY, rowBase];
    for (let j = 2; j < 16; j++) row.push(add(row[j - 1]!, rowBase));
    rows.push(row);
    rowBase = add(row[15]!, rowBase); // 16^(i+1)·BASE
  }
  return rows;
}

/**
 * scalar·BASE for scalars below 2^256, by the fixed-base table: one addition per nibble
 * instead of a doubling per bit and an addition per set bit (signing a narinfo is one of
 * these; six times fewer additions).
 */
export function multiplyBase(scalar: bigint): Point {
  if (scalar < 0n || scalar >= 1n << 256n) throw new Ed25519PointError('scalar outside 0..2^256');
  baseTable ??= makeBaseTable();
  let result = IDENTITY;
  let k = scalar;
  for (let i = 0; k > 0n; i++, k >>= 4n) {
    const nibble = Number(k & 15n);
    if (nibble !== 0) result = add(result, baseTable[i]![nibble]!);
  }
  return result;
}

export function isIdentity(p: Point): boolean {
  return mod(p.X, P) === 0n && mod(p.Y - p.Z, P) === 0n;
}

export function isOnCurve(x: bigint, y: bigint): boolean {
  if (x < 0n || x >= P || y < 0n || y >= P) return false;
  const x2 = (x * x) % P;
  const y2 = (y * y) % P;
  return mod(-x2 + y2 - 1n - D * x2 * y2, P) === 0n;
}

/** RFC 8032's 32-byte form: y little-endian, the top bit holding x's parity. */
export function encodePoint(p: Point): Uint8Array {
  const { x, y } = toAffine(p);
  const out = bigintToLittleEndian(y, 32);
  out[31]! |= Number(x & 1n) << 7;
  return out;
}

/**
 * Reads a point in the forms libgcrypt accepts for an Ed25519 `q`: 32 bytes (RFC 8032),
 * the same behind a 0x40 prefix, or 0x04 ‖ x ‖ y big-endian (uncompressed).
 */
export function decodePoint(bytes: Uint8Array): Point {
  if (bytes.length === 65 && bytes[0] === 0x04) {
    const x = bigintFromBigEndian(bytes.subarray(1, 33));
    const y = bigintFromBigEndian(bytes.subarray(33));
    if (!isOnCurve(x, y)) throw new Ed25519PointError('uncompressed point is not on the Ed25519 curve');
    return fromAffine(x, y);
  }
  const compressed = bytes.length === 33 && bytes[0] === 0x40 ? bytes.subarray(1) : bytes;
  if (compressed.length !== 32) {
    throw new Ed25519PointError(`an Ed25519 point is 32 bytes (or 33 with 0x40, 65 with 0x04), not ${bytes.length}`);
  }
  const last = compressed[31]!;
  const xOdd = last >> 7;
  const yBytes = Uint8Array.from(compressed);
  yBytes[31] = last & 0x7f;
  const y = bigintFromLittleEndian(yBytes);
  if (y >= P) throw new Ed25519PointError('point encoding has y ≥ p');
  const y2 = (y * y) % P;
  const u = mod(y2 - 1n, P);
  const v = mod(D * y2 + 1n, P);
  // x = sqrt(u/v) computed as u·v³·(u·v⁷)^((p-5)/8), RFC 8032 §5.1.3.
  let x = mod(u * pow(v, 3n, P) * pow(u * pow(v, 7n, P), (P - 5n) / 8n, P), P);
  const check = mod(v * x * x, P);
  if (check === mod(-u, P)) x = mod(x * SQRT_M1, P);
  else if (check !== u) throw new Ed25519PointError('point encoding is not on the Ed25519 curve');
  if (x === 0n && xOdd) throw new Ed25519PointError('point encoding has x = 0 with the sign bit set');
  if (Number(x & 1n) !== xOdd) x = P - x;
  return fromAffine(x, y);
}

export function bigintFromBigEndian(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

export function bigintFromLittleEndian(bytes: Uint8Array): bigint {
  return bigintFromBigEndian(Uint8Array.from(bytes).reverse());
}

/** Big-endian, left-padded to `length` bytes; refuses values that do not fit. */
export function bigintToBigEndian(value: bigint, length: number): Uint8Array {
  if (value < 0n) throw new Ed25519PointError('negative value');
  const hex = value.toString(16).padStart(length * 2, '0');
  if (hex.length > length * 2) throw new Ed25519PointError(`value does not fit in ${length} bytes`);
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

export function bigintToLittleEndian(value: bigint, length: number): Uint8Array {
  return bigintToBigEndian(value, length).reverse();
}
