// The fixed-base multiplication Guix signatures use agrees with the plain double-and-add.
import { describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { BASE, bigintFromBigEndian, encodePoint, IDENTITY, isIdentity, multiply, multiplyBase, N } from '../../../src/store/ed25519-point.js';

describe('multiplyBase', () => {
  const scalars = [1n, 2n, 15n, 16n, 17n, 255n, 256n, N - 1n, N, N + 1n, (1n << 256n) - 1n, ...Array.from({ length: 20 }, () => bigintFromBigEndian(randomBytes(32)))];

  test.each(scalars.map((k) => [k.toString(16), k] as const))('0x%s · BASE as multiply gives it', (_hex, k) => {
    expect(Buffer.from(encodePoint(multiplyBase(k))).toString('hex')).toBe(Buffer.from(encodePoint(multiply(k, BASE))).toString('hex'));
  });

  test('0 and n give the identity; scalars outside 0..2^256 are refused', () => {
    expect(multiplyBase(0n)).toEqual(IDENTITY);
    expect(isIdentity(multiplyBase(N))).toBe(true);
    expect(() => multiplyBase(-1n)).toThrow('scalar outside');
    expect(() => multiplyBase(1n << 256n)).toThrow('scalar outside');
  });
});
