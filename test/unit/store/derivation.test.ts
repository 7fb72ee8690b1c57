import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import {
  computeOutputPaths,
  derivationName,
  derivationStorePath,
  DerivationError,
  parseDerivation,
  printDerivation,
  verifyDerivation,
  type Derivation,
} from '../../../src/store/derivation.js';
import { instantiate } from '../../helpers/nix.js';

const SYSTEM = 'x86_64-linux';
const sh = (name: string, script: string, extra = '') =>
  `derivation { name = "${name}"; system = "${SYSTEM}"; builder = "/bin/sh"; args = [ "-c" ${JSON.stringify(script)} ]; ${extra} }`;

/** Reads a .drv and, recursively, its inputs from the real store. */
function load(path: string, into = new Map<string, { text: string; drv: Derivation }>()) {
  if (into.has(path)) return into;
  const text = readFileSync(path, 'utf8');
  const drv = parseDerivation(text);
  into.set(path, { text, drv });
  for (const input of drv.inputDrvs.keys()) load(input, into);
  return into;
}

function checkAgainstNix(drvPath: string) {
  const all = load(drvPath);
  const resolve = (p: string) => all.get(p)!.drv;
  for (const [path, { text, drv }] of all) {
    expect(printDerivation(drv)).toBe(text);
    expect(derivationStorePath(text, drv, derivationName(path), '/nix/store')).toBe(path);
    const computed = computeOutputPaths(drv, derivationName(path), '/nix/store', resolve);
    expect(Object.fromEntries(computed)).toEqual(Object.fromEntries([...drv.outputs].map(([n, o]) => [n, o.path])));
    expect(verifyDerivation(drv, derivationName(path), '/nix/store', resolve)).toEqual([]);
  }
  return all;
}

describe('derivations made by nix-instantiate', () => {
  test('a simple derivation: same bytes, same .drv path, same output path', () => {
    const [drv] = instantiate(sh('simple', 'echo hi > $out'));
    checkAgainstNix(drv!);
  });

  test('several outputs', () => {
    const [drv] = instantiate(sh('multi', 'echo > $out; echo > $dev; echo > $lib', 'outputs = [ "out" "dev" "lib" ];'));
    const all = checkAgainstNix(drv!);
    expect([...all.get(drv!)!.drv.outputs.keys()]).toEqual(['dev', 'lib', 'out']);
  });

  test('fixed-output derivations, flat and recursive', () => {
    const flat = instantiate(
      sh('fod-flat', 'printf hi > $out', 'outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";'),
    )[0]!;
    const rec = instantiate(
      sh('fod-rec', 'mkdir $out', 'outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "1h86vccx9vgcyrkj3zv4b7j3r8rrc0z0r4r6q3jvhf06s9hnm394";'),
    )[0]!;
    const sha1 = instantiate(sh('fod-sha1', 'printf hi > $out', 'outputHashAlgo = "sha1"; outputHash = "c22b5f9178342609428d6f51b2c5af4c0bde6a42";'))[0]!;
    for (const p of [flat, rec, sha1]) checkAgainstNix(p);
    expect(parseDerivation(readFileSync(rec, 'utf8')).outputs.get('out')!.hashAlgo).toBe('r:sha256');
  });

  test('a chain and a diamond of input derivations, with a fixed-output input', () => {
    const expr = `let
      fod = ${sh('src', 'printf hi > $out', 'outputHashAlgo = "sha256"; outputHash = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";')};
      a = ${sh('a', 'cat ${fod} > $out')};
      b = ${sh('b', 'cat ${a} > $out')};
      c = ${sh('c', 'cat ${a} > $out; echo ${fod}')};
      multi = ${sh('m', 'echo > $out; echo > $dev', 'outputs = [ "out" "dev" ];')};
    in ${sh('top', 'cat ${b} ${c} ${multi.dev} ${multi.out} > $out')}`;
    const [top] = instantiate(expr);
    const all = checkAgainstNix(top!);
    expect(all.size).toBe(6);
  });

  test('strings that need escapes: quotes, backslashes, newlines, tabs, carriage returns, unicode', () => {
    const [drv] = instantiate(sh('escapes', 'echo > $out', 'weird = "q\\" b\\\\ n\\n t\\t r\\r ü ☃ 🎉";'));
    const all = checkAgainstNix(drv!);
    expect(all.get(drv!)!.drv.env.get('weird')).toBe('q" b\\ n\n t\t r\r ü ☃ 🎉');
  });
});

describe('tampered derivations', () => {
  const [drvPath] = instantiate(sh('tamper', 'echo > $out; echo > $dev', 'outputs = [ "out" "dev" ];'));
  const text = readFileSync(drvPath!, 'utf8');
  const name = derivationName(drvPath!);
  const noInputs = () => {
    throw new Error('no inputs');
  };

  test('a changed builder changes the .drv path and the output paths, and says which output', () => {
    const drv = parseDerivation(text.replace('"/bin/sh"', '"/bin/bash"'));
    expect(derivationStorePath(printDerivation(drv), drv, name, '/nix/store')).not.toBe(drvPath);
    const problems = verifyDerivation(drv, name, '/nix/store', noInputs);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^output dev is \/nix\/store\/\S+-tamper-dev but the derivation yields/);
  });

  test('a changed output path is named', () => {
    const drv = parseDerivation(text);
    const out = drv.outputs.get('out')!;
    const forged = '/nix/store/' + '0'.repeat(32) + '-tamper';
    drv.outputs.set('out', { ...out, path: forged });
    drv.env.set('out', forged);
    expect(verifyDerivation(drv, name, '/nix/store', noInputs)).toEqual([expect.stringMatching(/^output out is \/nix\/store\/0{32}-tamper but/)]);
  });

  test('an environment variable that disagrees with its output is named', () => {
    const drv = parseDerivation(text);
    drv.env.set('dev', '/tmp/elsewhere');
    expect(verifyDerivation(drv, name, '/nix/store', noInputs)).toEqual([expect.stringMatching(/^environment variable dev is "\/tmp\/elsewhere"/)]);
  });
});

describe('the ATerm parser', () => {
  const valid = readFileSync(instantiate(sh('fuzz', 'echo > $out', 'x = "a\\"b";'))[0]!, 'utf8');

  test('says what it expected and where', () => {
    expect(() => parseDerivation('Derive([("out"')).toThrow(/expected ",".*at offset 14/);
    expect(() => parseDerivation(valid + ' ')).toThrow(/unexpected text after the derivation/);
    expect(() => parseDerivation('Derive([],[],[],"","",[],[])')).toThrow(/no outputs/);
  });

  test('round-trips random derivations', () => {
    const str = fc.string({ unit: 'grapheme', maxLength: 20 });
    const arb = fc.record({
      outputs: fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z]{1,6}$/), str, str, str), { minLength: 1, maxLength: 4, selector: (t) => t[0] }),
      inputDrvs: fc.uniqueArray(fc.tuple(str, fc.array(str, { maxLength: 3 })), { maxLength: 3, selector: (t) => t[0] }),
      inputSrcs: fc.array(str, { maxLength: 3 }),
      platform: str,
      builder: str,
      args: fc.array(str, { maxLength: 4 }),
      env: fc.uniqueArray(fc.tuple(str, str), { maxLength: 5, selector: (t) => t[0] }),
    });
    fc.assert(
      fc.property(arb, (r) => {
        const drv: Derivation = {
          outputs: new Map(r.outputs.map(([n, p, a, h]) => [n, { path: p, hashAlgo: a, hash: h }])),
          inputDrvs: new Map(r.inputDrvs),
          inputSrcs: r.inputSrcs,
          platform: r.platform,
          builder: r.builder,
          args: r.args,
          env: new Map(r.env),
        };
        const text = printDerivation(drv);
        expect(printDerivation(parseDerivation(text))).toBe(text);
      }),
    );
  });

  test('random and mutated input only ever raises DerivationError', () => {
    const check = (input: string) => {
      try {
        parseDerivation(input);
      } catch (err) {
        expect(err).toBeInstanceOf(DerivationError);
      }
    };
    fc.assert(fc.property(fc.string({ maxLength: 200 }), check));
    fc.assert(
      fc.property(fc.nat({ max: valid.length - 1 }), fc.nat({ max: 40 }), fc.string({ maxLength: 4 }), (at, cut, insert) => {
        check(valid.slice(0, at) + insert + valid.slice(at + cut));
      }),
      { numRuns: 500 },
    );
  });
});
