import { describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { compressHash, Hash, HashError, type HashAlgorithm } from '../../../src/store/hash.js';
import { nix } from '../../helpers/nix.js';

const ALGORITHMS: HashAlgorithm[] = ['md5', 'sha1', 'sha256', 'sha512'];
const SIZES = { md5: 16, sha1: 20, sha256: 32, sha512: 64 } as const;

describe('hash forms against the nix hash command', () => {
  test.each(ALGORITHMS)('%s: SRI and base64 as nix hash to-sri/to-base64 print them, and back to hex', (algo) => {
    const hexes = Array.from({ length: 20 }, () => randomBytes(SIZES[algo]).toString('hex'));
    const sri = nix('nix', ['hash', 'to-sri', '--type', algo, ...hexes]).toString().trim().split('\n');
    const b64 = nix('nix', ['hash', 'to-base64', '--type', algo, ...hexes]).toString().trim().split('\n');
    const hashes = hexes.map((h) => Hash.parseDigest(algo, h));
    expect(hashes.map((h) => h.sri)).toEqual(sri);
    expect(hashes.map((h) => h.base64)).toEqual(b64);
    expect(sri.map((s) => Hash.parse(s).hex)).toEqual(hexes);
  });
});

describe('hash forms', () => {
  const h = Hash.of('sha256', 'kiln');

  test('parses hex (either case), base32, base64 and SRI to the same hash', () => {
    for (const text of [`sha256:${h.hex}`, `sha256:${h.hex.toUpperCase()}`, `sha256:${h.base32}`, `sha256:${h.base64}`, h.sri]) {
      expect(Hash.parse(text).equals(h)).toBe(true);
    }
  });

  test('prints sha256:<base32> as narinfo writes it', () => {
    expect(h.toString()).toBe(`sha256:${h.base32}`);
    expect(h.toString()).toMatch(/^sha256:[0-9a-df-np-sv-z]{52}$/);
  });

  test('any algorithm and bytes survive every printed form', () => {
    fc.assert(
      fc.property(fc.constantFrom(...ALGORITHMS), fc.integer(), (algo, seed) => {
        const hash = Hash.of(algo, String(seed));
        for (const text of [hash.toString(), hash.sri, `${algo}:${hash.hex}`, `${algo}:${hash.base64}`]) {
          expect(Hash.parse(text).equals(hash)).toBe(true);
        }
      }),
    );
  });

  test('refuses unknown algorithms, malformed digests and wrong lengths, saying which', () => {
    expect(() => Hash.parse('sha3:abc')).toThrow(HashError);
    expect(() => Hash.parse('sha3:abc')).toThrow(/unknown hash algorithm "sha3"/);
    expect(() => Hash.parse('sha256:xyz')).toThrow(/not a sha256 digest/);
    expect(() => Hash.parse('nocolon')).toThrow(/<algo>:<digest>/);
    expect(() => Hash.parse(`sha256:${'g'.repeat(64)}`)).toThrow(/not a sha256 digest/);
    expect(() => Hash.parse(`sha256:${'e'.repeat(52)}`)).toThrow(/bad sha256 digest: "e" is not a Nix base32 character/);
    expect(() => Hash.parse(`sha1:${h.hex}`)).toThrow(/not a sha1 digest/);
    expect(() => new Hash('sha256', new Uint8Array(20))).toThrow(/a sha256 hash has 32 bytes, not 20/);
  });
});

describe('compressHash', () => {
  test('XOR-folds bytes onto the first `size` positions', () => {
    const bytes = Uint8Array.from({ length: 32 }, (_, i) => i);
    const folded = compressHash(bytes, 20);
    // Position i collects bytes i and i + 20 (for i < 12).
    expect([...folded]).toEqual(Array.from({ length: 20 }, (_, i) => (i < 12 ? i ^ (i + 20) : i)));
  });
});
