import { describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Base32Error, decodeBase32, encodeBase32 } from '../../../src/store/base32.js';
import { Hash, HashError } from '../../../src/store/hash.js';
import { nix } from '../../helpers/nix.js';

describe('Nix base32', () => {
  test('matches nix-hash --to-base32 for many random sha256 hashes', () => {
    const hexes = Array.from({ length: 40 }, () => randomBytes(32).toString('hex'));
    const fromNix = nix('nix-hash', ['--type', 'sha256', '--to-base32', ...hexes]).toString().trim().split('\n');
    expect(hexes.map((h) => encodeBase32(Buffer.from(h, 'hex')))).toEqual(fromNix);
  });

  test('matches nix-hash --base32 of a file tree, and sha1/md5 lengths', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-b32-'));
    writeFileSync(join(dir, 'f'), 'hello\n');
    const sha1 = randomBytes(20).toString('hex');
    const fromNix = nix('nix-hash', ['--type', 'sha1', '--to-base32', sha1]).toString().trim();
    expect(encodeBase32(Buffer.from(sha1, 'hex'))).toBe(fromNix);
    const narHash = nix('nix-hash', ['--type', 'sha256', '--base32', dir]).toString().trim();
    const narHex = nix('nix-hash', ['--type', 'sha256', dir]).toString().trim();
    expect(Hash.parse(`sha256:${narHash}`).hex).toBe(narHex);
  });

  test('round-trips any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 80 }), (bytes) => {
        expect(Buffer.from(decodeBase32(encodeBase32(bytes), bytes.length))).toEqual(Buffer.from(bytes));
      }),
    );
  });

  test('refuses letters outside the alphabet and bits beyond the length', () => {
    expect(() => decodeBase32('e'.repeat(52), 32)).toThrow(Base32Error);
    expect(() => decodeBase32('z' + '0'.repeat(51), 32)).toThrow(/bits beyond/);
    expect(() => decodeBase32('0'.repeat(51), 32)).toThrow(/52 characters/);
  });
});

describe('hash forms', () => {
  const h = Hash.of('sha256', 'kiln');
  test('parses hex, base32, base64 and SRI forms to the same hash', () => {
    for (const text of [`sha256:${h.hex}`, `sha256:${h.base32}`, `sha256:${h.base64}`, h.sri]) {
      expect(Hash.parse(text).equals(h)).toBe(true);
    }
    expect(h.toString()).toBe(`sha256:${h.base32}`);
  });

  test('refuses unknown algorithms and malformed digests', () => {
    expect(() => Hash.parse('sha3:abc')).toThrow(HashError);
    expect(() => Hash.parse('sha256:xyz')).toThrow(/not a sha256 digest/);
    expect(() => Hash.parse('nocolon')).toThrow(/<algo>:<digest>/);
  });
});
