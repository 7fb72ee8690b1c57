import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASE32_ALPHABET } from '../../../src/store/base32.js';
import { dumpPath } from '../../../src/store/nar-writer.js';
import { ReferenceScanner } from '../../../src/store/references.js';
import { CHROOT_STORE_CONFIG, nix } from '../../helpers/nix.js';
import { SYSTEM } from './drv-helpers.js';
import { cut } from './nar-fixtures.js';

const hashPartArb = fc.string({ unit: fc.constantFrom(...BASE32_ALPHABET), minLength: 32, maxLength: 32 });
const pathOf = (hashPart: string, name = 'x') => `/nix/store/${hashPart}-${name}`;

function scan(candidates: string[], chunks: Uint8Array[]): string[] {
  const scanner = new ReferenceScanner(candidates);
  for (const c of chunks) scanner.feed(c);
  return scanner.found();
}

describe('ReferenceScanner', () => {
  const a = pathOf('0c5k9gqkqa8n0mdmyf0ys4d1lv5sfm5b', 'a');
  const b = pathOf('1ff6wbfp9i2mafyqwqfzhdn5zvm2rc14', 'b');
  const c = pathOf('zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz', 'c');

  test('finds the candidates whose hash parts occur, by hash part alone, and only those', () => {
    const text = Buffer.from(`prefix${a.slice(11, 43)}-anything-else\0garbage /nix/store/${b.slice(11, 43)}`);
    expect(scan([a, b, c], [text])).toEqual([a, b].sort());
  });

  test('finds a hash part right after non-base32 bytes and at the very end', () => {
    const hash = c.slice(11, 43);
    expect(scan([c], [Buffer.from(`e${hash}`)])).toEqual([c]); // 'e' is not base32
    expect(scan([c], [Buffer.from(`zzz${hash}`)])).toEqual([c]); // a longer base32 run
  });

  test('finds nothing in a truncated hash part or one with a letter Nix base32 lacks', () => {
    const hash = a.slice(11, 43);
    expect(scan([a], [Buffer.from(hash.slice(0, 31))])).toEqual([]);
    expect(scan([a], [Buffer.from(`${hash.slice(0, 10)}e${hash.slice(11)}`)])).toEqual([]);
  });

  test('finds the same references however the stream is cut, even one byte at a time', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(hashPartArb, { minLength: 1, maxLength: 5 }),
        // Noise of any bytes, or of base32 characters only, so that hash parts sit inside long runs.
        fc.array(fc.tuple(fc.nat(4), fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.string({ unit: fc.constantFrom(...BASE32_ALPHABET), maxLength: 40 }))), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (hashes, pieces, cuts) => {
          const candidates = hashes.map((h) => pathOf(h));
          // Some candidates' hash parts between random bytes.
          const data = Buffer.concat(pieces.flatMap(([i, noise]) => [Buffer.from(noise), Buffer.from(hashes[i % hashes.length]!)]));
          const whole = scan(candidates, [data]);
          expect(scan(candidates, cut(data, cuts.map((c) => c % (data.length + 1))))).toEqual(whole);
          expect(scan(candidates, [...data].map((byte) => Buffer.from([byte])))).toEqual(whole);
          for (const [i] of pieces) expect(whole).toContain(candidates[i % hashes.length]);
        },
      ),
    );
  });
});

describe('references as Nix finds them', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'kiln-refs-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test('scanning the NAR of a real output gives what nix-store --query --references says', async () => {
    const store = join(root, 'store');
    // Inputs referred to by file contents, by a symlink target and by a file name; one not at all;
    // one output refers to itself and to the other output (not both ways: Nix refuses a cycle).
    const expr = `let
      sh = name: script: derivation { name = name; system = "${SYSTEM}"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" script ]; };
      a = sh "ref-a" "echo a > $out";
      b = sh "ref-b" "echo b > $out";
      c = sh "ref-c" "echo c > $out";
      unused = sh "ref-unused" "echo unused > $out";
    in derivation {
      name = "ref-top"; system = "${SYSTEM}"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; outputs = [ "out" "dev" ];
      inherit unused;
      args = [ "-c" "mkdir -p $out/sub $dev; echo \${a} > $out/sub/file; ln -s \${b} $out/link; touch \\"$out/$(basename \${c})\\"; echo $out $dev > $out/self; echo dev > $dev/file" ];
    }`;
    const run = (cmd: string, args: string[]) => nix(cmd, ['--store', store, ...args], { config: CHROOT_STORE_CONFIG }).toString().trim().split('\n').filter(Boolean);
    const [drv] = run('nix-instantiate', ['--expr', expr]);
    const outputs = run('nix-store', ['--realise', drv!]);
    // What Nix scans for: the outputs of the input derivations (their closure: these have no
    // references) and the derivation's own outputs.
    const inputOutputs = run('nix-store', ['--realise', ...run('nix-store', ['--query', '--references', drv!])]);
    expect(inputOutputs).toHaveLength(4);
    const candidates = [...inputOutputs, ...outputs];
    expect(outputs).toHaveLength(2);
    const found: string[][] = [];
    for (const output of outputs) {
      const scanner = new ReferenceScanner(candidates);
      for await (const chunk of dumpPath(join(store, output))) scanner.feed(chunk);
      found.push(scanner.found());
      expect(scanner.found()).toEqual(run('nix-store', ['--query', '--references', output]).sort());
    }
    // out: a, b, c, itself and dev; dev: nothing.
    expect(found.map((refs) => refs.length).sort()).toEqual([0, 5]);
  }, 120_000);
});
