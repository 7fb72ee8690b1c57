import { describe, expect, test } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { BASE32_ALPHABET, Base32Error, base32Length, decodeBase32, encodeBase32 } from '../../../src/store/base32.js';
import { nix } from '../../helpers/nix.js';

const nixLines = (cmd: string, args: string[]) => nix(cmd, args).toString().trim().split('\n');

describe('Nix base32 against nix-hash', () => {
  test.each([
    ['sha256', 32],
    ['sha1', 20],
    ['sha512', 64],
    ['md5', 16],
  ])('encodes 100 random %s hashes as nix-hash --to-base32 does, and decodes them back', (type, size) => {
    const hexes = Array.from({ length: 100 }, () => randomBytes(size).toString('hex'));
    const fromNix = nixLines('nix-hash', ['--type', type, '--to-base32', ...hexes]);
    expect(hexes.map((h) => encodeBase32(Buffer.from(h, 'hex')))).toEqual(fromNix);
    expect(fromNix.map((b) => Buffer.from(decodeBase32(b, size)).toString('hex'))).toEqual(hexes);
  });

  test('encodes edge bytes (all zero, all ones, one bit set) as Nix does', () => {
    const hexes = ['00'.repeat(32), 'ff'.repeat(32), '01' + '00'.repeat(31), '00'.repeat(31) + '80'];
    expect(hexes.map((h) => encodeBase32(Buffer.from(h, 'hex')))).toEqual(nixLines('nix-hash', ['--type', 'sha256', '--to-base32', ...hexes]));
  });

  test('matches nix-hash --base32 of a file (flat) and of a tree (NAR)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-b32-'));
    const contents = randomBytes(1000);
    writeFileSync(join(dir, 'f'), contents);
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'g'), 'hello\n');
    const flat = nix('nix-hash', ['--type', 'sha256', '--flat', '--base32', join(dir, 'f')]).toString().trim();
    expect(flat).toBe(encodeBase32(createHash('sha256').update(contents).digest()));
    // The NAR hash of a tree: Nix's base32 and hex forms must decode to the same bytes.
    const tree = nix('nix-hash', ['--type', 'sha256', '--base32', dir]).toString().trim();
    const treeHex = nix('nix-hash', ['--type', 'sha256', dir]).toString().trim();
    expect(Buffer.from(decodeBase32(tree, 32)).toString('hex')).toBe(treeHex);
  });
});

describe('Nix base32 rules', () => {
  test('round-trips any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 80 }), (bytes) => {
        const text = encodeBase32(bytes);
        expect(text).toHaveLength(base32Length(bytes.length));
        expect(Buffer.from(decodeBase32(text, bytes.length))).toEqual(Buffer.from(bytes));
      }),
    );
  });

  test.each(['e', 'o', 'u', 't', 'A', '=', ' '])('refuses %j, which is not in the alphabet', (bad) => {
    const text = bad + '0'.repeat(51);
    expect(() => decodeBase32(text, 32)).toThrow(Base32Error);
    expect(() => decodeBase32(text, 32)).toThrow(`${JSON.stringify(bad)} is not a Nix base32 character`);
  });

  test('refuses a first character whose high bits fall beyond the last byte, as nix-hash does', () => {
    // 52 characters carry 260 bits for 256: the first holds only the top bit of byte 31.
    const zeros = '0'.repeat(51);
    expect(Buffer.from(decodeBase32('1' + zeros, 32)).toString('hex')).toBe(nix('nix-hash', ['--type', 'sha256', '--to-base16', '1' + zeros]).toString().trim());
    expect(() => nix('nix-hash', ['--type', 'sha256', '--to-base16', '2' + zeros])).toThrow(/invalid base-32 hash/);
    for (const c of BASE32_ALPHABET.slice(2)) expect(() => decodeBase32(c + zeros, 32)).toThrow(/bits beyond 32 bytes/);
  });

  test('refuses text of the wrong length for the byte count', () => {
    expect(() => decodeBase32('0'.repeat(51), 32)).toThrow(/52 characters, not 51/);
    expect(() => decodeBase32('0'.repeat(33), 20)).toThrow(/32 characters, not 33/);
  });
});
