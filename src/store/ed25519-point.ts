// Points of the Ed25519 curve for Guix's ECDSA keys, and the point encodings libgcrypt
// reads. The arithmetic is @noble/curves' (audited; a constant-time multiply for secret
// scalars); this file only adapts it to the forms libgcrypt uses and to scalars above n
// (Guix's secret scalars are 2^254 ≤ d < 2^255, n ≈ 2^252).
import { ed25519 } from '@noble/curves/ed25519.js';
import type { EdwardsPoint } from '@noble/curves/abstract/edwards.js';
import { bytesToNumberBE, numberToBytesBE } from '@noble/curves/utils.js';

export class Ed25519PointError extends Error {
  override name = 'Ed25519PointError';
}

export type Point = EdwardsPoint;

const Curve = ed25519.Point;
/** The scalar field: integers modulo the base point's order n. */
export const Fn = Curve.Fn;
/** The order of the base point (the group the signatures work in). */
export const N = Fn.ORDER;
export const IDENTITY: Point = Curve.ZERO;
export const BASE: Point = Curve.BASE;

export function toAffine(p: Point): { x: bigint; y: bigint } {
  const { x, y } = p.toAffine();
  return { x, y };
}

export function add(p: Point, q: Point): Point {
  return p.add(q);
}

/**
 * scalar·BASE for a secret scalar below 2^256, by noble's constant-time multiply. BASE
 * has order n, so reducing the scalar first changes nothing.
 */
export function multiplyBase(scalar: bigint): Point {
  if (scalar < 0n || scalar >= 1n << 256n) throw new Ed25519PointError('scalar outside 0..2^256');
  const reduced = Fn.create(scalar);
  return reduced === 0n ? IDENTITY : BASE.multiply(reduced);
}

/**
 * scalar·p for a public scalar (verification): variable-time. Any scalar ≥ 0 and any
 * point on the curve, including one with a small-order part, whose multiple is not
 * periodic in n: scalar·p = ⌊scalar/8⌋·(8p) + (scalar mod 8)·p, and 8p has order n.
 */
export function multiply(scalar: bigint, p: Point): Point {
  if (scalar < 0n) throw new Ed25519PointError('negative scalar');
  const high = p.clearCofactor().multiplyUnsafe(Fn.create(scalar >> 3n));
  return high.add(p.multiplyUnsafe(scalar & 7n));
}

export function isIdentity(p: Point): boolean {
  return p.is0();
}

/** RFC 8032's 32-byte form: y little-endian, the top bit holding x's parity. */
export function encodePoint(p: Point): Uint8Array {
  return p.toBytes();
}

/**
 * Reads a point in the forms libgcrypt accepts for an Ed25519 `q`: 32 bytes (RFC 8032),
 * the same behind a 0x40 prefix, or 0x04 ‖ x ‖ y big-endian (uncompressed).
 */
export function decodePoint(bytes: Uint8Array): Point {
  if (bytes.length === 65 && bytes[0] === 0x04) {
    const x = bytesToNumberBE(bytes.subarray(1, 33));
    const y = bytesToNumberBE(bytes.subarray(33));
    try {
      const p = Curve.fromAffine({ x, y });
      if (!p.is0()) p.assertValidity();
      return p;
    } catch (cause) {
      throw new Ed25519PointError('uncompressed point is not on the Ed25519 curve', { cause });
    }
  }
  const compressed = bytes.length === 33 && bytes[0] === 0x40 ? bytes.subarray(1) : bytes;
  if (compressed.length !== 32) {
    throw new Ed25519PointError(`an Ed25519 point is 32 bytes (or 33 with 0x40, 65 with 0x04), not ${bytes.length}`);
  }
  try {
    // zip215 off: RFC 8032's strict reading (y < p; x = 0 with the sign bit set refused).
    return Curve.fromBytes(Uint8Array.from(compressed), false);
  } catch (cause) {
    throw new Ed25519PointError(`point encoding is not an Ed25519 point: ${(cause as Error).message}`, { cause });
  }
}

export const bigintFromBigEndian: (bytes: Uint8Array) => bigint = bytesToNumberBE;

/** Big-endian, left-padded to `length` bytes; refuses values that do not fit. */
export function bigintToBigEndian(value: bigint, length: number): Uint8Array {
  if (value < 0n) throw new Ed25519PointError('negative value');
  try {
    return numberToBytesBE(value, length);
  } catch (cause) {
    throw new Ed25519PointError(`value does not fit in ${length} bytes`, { cause });
  }
}
