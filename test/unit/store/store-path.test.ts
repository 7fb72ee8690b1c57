import { describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Hash, type HashAlgorithm } from '../../../src/store/hash.js';
import {
  makeFixedOutputPath,
  makeStorePath,
  makeTextPath,
  parseStorePath,
  StorePathError,
  validateName,
} from '../../../src/store/store-path.js';
import { nix } from '../../helpers/nix.js';

/** A Nix store whose paths are /gnu/store paths, kept in a temporary directory. */
function gnuStore(): string {
  const root = mkdtempSync(join(tmpdir(), 'kiln-gnu-'));
  return `local?store=/gnu/store&real=${root}/store&state=${root}/state&log=${root}/log`;
}

const SIZES = { md5: 16, sha1: 20, sha256: 32, sha512: 64 } as const;

describe('fixed-output paths against nix-store --print-fixed-path', () => {
  const stores: [string, string[]][] = [
    ['/nix/store', []],
    ['/gnu/store', ['--store', gnuStore()]],
  ];
  const cases = stores.flatMap(([dir, args]) =>
    (['md5', 'sha1', 'sha256', 'sha512'] as HashAlgorithm[]).flatMap((algo) => [false, true].map((recursive) => [dir, args, algo, recursive] as const)),
  );

  test.each(cases)('%s %s recursive=%s', (storeDir, storeArgs, algo, recursive) => {
    for (const name of ['foo', 'source', 'a-1.2.tar.gz']) {
      const hex = randomBytes(SIZES[algo]).toString('hex');
      const want = nix('nix-store', [...storeArgs, '--print-fixed-path', ...(recursive ? ['--recursive'] : []), algo, hex, name]).toString().trim();
      expect(makeFixedOutputPath(recursive, Hash.parseDigest(algo, hex), name, storeDir)).toBe(want);
    }
  });
});

describe('text paths against builtins.toFile', () => {
  test('a text with no references, and one that refers to another text', () => {
    const content = `kiln ${randomBytes(8).toString('hex')}`;
    const inner = JSON.parse(nix('nix-instantiate', ['--eval', '--expr', `builtins.toFile "inner" "${content}"`]).toString()) as string;
    expect(makeTextPath('inner', content, [], '/nix/store')).toBe(inner);
    const outerExpr = `builtins.toFile "outer" "see \${builtins.toFile "inner" "${content}"}"`;
    const outer = JSON.parse(nix('nix-instantiate', ['--eval', '--expr', outerExpr]).toString()) as string;
    expect(makeTextPath('outer', `see ${inner}`, [inner], '/nix/store')).toBe(outer);
    expect(makeTextPath('outer', `see ${inner}`, [], '/nix/store')).not.toBe(outer);
  });
});

describe('makeStorePath', () => {
  test('takes the inner hash as a Hash or as SHA-256 hex, and refuses a bad name or store dir', () => {
    const h = Hash.of('sha256', 'x');
    expect(makeStorePath('output:out', h.hex, 'x', '/nix/store')).toBe(makeStorePath('output:out', h, 'x', '/nix/store'));
    expect(() => makeStorePath('output:out', h, 'a b', '/nix/store')).toThrow(/has " " at position 1/);
    expect(() => makeStorePath('output:out', h, 'x', '/nix/store/')).toThrow(/not a canonical absolute path/);
    expect(() => makeStorePath('output:out', h, 'x', 'nix/store')).toThrow(/not a canonical absolute path/);
  });
});

describe('parseStorePath', () => {
  const hash = '0'.repeat(10) + 'abcdfghijklmnpqrsvwxyz';

  test('splits any store dir, hash part and name', () => {
    expect(parseStorePath(`/gnu/store/${hash}-guile-3.0.9`)).toEqual({
      storeDir: '/gnu/store',
      hashPart: hash,
      name: 'guile-3.0.9',
      path: `/gnu/store/${hash}-guile-3.0.9`,
      baseName: `${hash}-guile-3.0.9`,
    });
    expect(parseStorePath(`/nix/store/${hash}-a+b?c=d_e.f-g`, '/nix/store').name).toBe('a+b?c=d_e.f-g');
  });

  test.each([
    ['relative/store/HASH-x', /not an absolute store path/],
    ['/HASH-x', /not an absolute store path/],
    ['/nix//store/HASH-x', /not a canonical absolute path/],
    ['/nix/./store/HASH-x', /not a canonical absolute path/],
    ['/nix/store/abc-x', /too short/],
    ['/nix/store/HASH', /too short/],
    ['/nix/store/e' + '0'.repeat(31) + '-x', /"e" at position 0 of its hash part, which is not a Nix base32 character/],
    ['/nix/store/' + '0'.repeat(31) + 'E-x', /"E" at position 31 of its hash part/],
    ['/nix/store/HASH_x', /no '-' between its 32-character hash part and its name/],
    ['/nix/store/HASH-.hidden', /starts with '.'/],
    ['/nix/store/HASH-a b', /has " " at position 1; only A-Z a-z 0-9 \+ - \. _ \? = are allowed/],
    ['/nix/store/HASH-caf\u00e9', /has "é" at position 3/],
    ['/nix/store/HASH-' + 'a'.repeat(212), /has 212 characters, more than 211/],
    ['/gnu/store/HASH-x', /is not in the store \/nix\/store/],
  ])('refuses %s, saying why', (path, why) => {
    const p = path.replace('HASH', hash);
    expect(() => parseStorePath(p, '/nix/store')).toThrow(StorePathError);
    expect(() => parseStorePath(p, '/nix/store')).toThrow(why);
  });

  test('takes a 211-character name', () => {
    expect(parseStorePath(`/nix/store/${hash}-${'a'.repeat(211)}`).name).toHaveLength(211);
  });

  test('name rules agree with the pattern Nix documents, for any string', () => {
    const allowed = /^[A-Za-z0-9+\-._?=]{1,211}$/;
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 12 }), fc.stringMatching(/^[A-Za-z0-9+\-._?=]{0,12}$/)), (name) => {
        const ok = allowed.test(name) && !name.startsWith('.');
        if (ok) expect(validateName(name)).toBe(name);
        else expect(() => validateName(name)).toThrow(StorePathError);
      }),
    );
  });
});
