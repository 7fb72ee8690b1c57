import { describe, expect, test } from '@jest/globals';
import {
  DerivationError,
  DerivationProblem,
  derivationName,
  derivationStorePath,
  hashDerivationModulo,
  parseDerivation,
  printDerivation,
  verifyDerivation,
  type Derivation,
} from '../../../src/store/derivation.js';
import { Hash } from '../../../src/store/hash.js';
import { HI_SHA256, loadClosure, nixStore, resolverOf, sh } from './drv-helpers.js';

const clone = (drv: Derivation): Derivation => parseDerivation(printDerivation(drv));
const summary = (problems: DerivationProblem[]) => problems.map((p) => [p.output, p.field]);

describe('a tampered derivation is caught, naming the output', () => {
  const [drvPath] = nixStore.instantiate(sh('tamper', 'echo > $out; echo > $dev', 'outputs = [ "out" "dev" ];'));
  const { text, drv: original } = loadClosure(nixStore, drvPath!).get(drvPath!)!;
  const name = derivationName(drvPath!);
  const noInputs = new Map<string, Derivation>();

  test('the untouched derivation has no problems', () => {
    expect(verifyDerivation(original, name, '/nix/store', noInputs)).toEqual([]);
  });

  test('a changed builder changes the .drv path and every output path', () => {
    const drv = parseDerivation(text.replace('"/bin/sh"', '"/bin/bash"'));
    expect(derivationStorePath(printDerivation(drv), drv, name, '/nix/store')).not.toBe(drvPath);
    const problems = verifyDerivation(drv, name, '/nix/store', noInputs);
    expect(summary(problems)).toEqual([
      ['dev', 'outputs["dev"].path'],
      ['dev', 'env["dev"]'],
      ['out', 'outputs["out"].path'],
      ['out', 'env["out"]'],
    ]);
    expect(problems[0]!.message).toMatch(/^output dev is \/nix\/store\/\S+-tamper-dev but the derivation yields \/nix\/store\/\S+-tamper-dev$/);
    expect(problems[0]!.found).toBe(original.outputs.get('dev')!.path);
  });

  test('a changed output path (with its env var) is named, and only that output', () => {
    const drv = clone(original);
    const forged = '/nix/store/' + '0'.repeat(32) + '-tamper';
    drv.outputs.get('out')!.path = forged;
    drv.env.set('out', forged);
    const problems = verifyDerivation(drv, name, '/nix/store', noInputs);
    expect(summary(problems)).toEqual([
      ['out', 'outputs["out"].path'],
      ['out', 'env["out"]'],
    ]);
    expect(problems[0]!.expected).toBe(original.outputs.get('out')!.path);
    expect(String(problems[0])).toMatch(/^output out is \/nix\/store\/0{32}-tamper but/);
  });

  test('an environment variable that disagrees with its output is named', () => {
    const drv = clone(original);
    drv.env.set('dev', '/tmp/elsewhere');
    const problems = verifyDerivation(drv, name, '/nix/store', noInputs);
    expect(summary(problems)).toEqual([['dev', 'env["dev"]']]);
    expect(problems[0]!.message).toMatch(/^environment variable dev is "\/tmp\/elsewhere", not the output path/);
  });

  test('a missing environment variable for an output is named (and, being hashed masked, moves every output)', () => {
    const drv = clone(original);
    drv.env.delete('out');
    const problems = verifyDerivation(drv, name, '/nix/store', noInputs);
    expect(summary(problems)).toHaveLength(4);
    expect(problems[3]!.message).toMatch(/^environment variable out is missing, not the output path/);
  });

  test('the wrong name or store dir yields other paths', () => {
    expect(summary(verifyDerivation(original, 'other', '/nix/store', noInputs))).toHaveLength(4);
    expect(summary(verifyDerivation(original, name, '/gnu/store', noInputs))).toHaveLength(4);
  });
});

describe('tampered fixed-output derivations and inputs', () => {
  const [useFod] = nixStore.instantiate(`let src = ${sh('src', 'printf hi > $out', `outputHashAlgo = "sha256"; outputHash = "${HI_SHA256}";`)};
    in ${sh('use', 'cat ${src} > $out')}`);
  const all = loadClosure(nixStore, useFod!);
  const fodPath = [...all.keys()].find((p) => p.endsWith('-src.drv'))!;
  const fod = all.get(fodPath)!.drv;

  test('a changed fixed hash moves the output', () => {
    const drv = clone(fod);
    drv.outputs.get('out')!.hash = 'f'.repeat(64);
    expect(summary(verifyDerivation(drv, 'src', '/nix/store', new Map()))).toEqual([
      ['out', 'outputs["out"].path'],
      ['out', 'env["out"]'],
    ]);
  });

  test('flat changed to recursive moves the output', () => {
    const drv = clone(fod);
    drv.outputs.get('out')!.hashAlgo = 'r:sha256';
    expect(summary(verifyDerivation(drv, 'src', '/nix/store', new Map()))[0]).toEqual(['out', 'outputs["out"].path']);
  });

  test('a fixed-output input whose written path was forged still hashes by the path it must have', () => {
    const forged = clone(fod);
    forged.outputs.get('out')!.path = '/nix/store/' + '1'.repeat(32) + '-src';
    const resolve = (p: string) => (p === fodPath ? forged : all.get(p)!.drv);
    const use = all.get(useFod!)!.drv;
    expect(verifyDerivation(use, 'use', '/nix/store', resolve)).toEqual([]);
  });

  test('a changed input-addressed input moves every output downstream', () => {
    const [top] = nixStore.instantiate(`let a = ${sh('a', 'echo > $out; echo > $dev', 'outputs = [ "out" "dev" ];')}; in ${sh('top', 'cat ${a.dev} > $out; echo > $doc', 'outputs = [ "out" "doc" ];')}`);
    const closure = loadClosure(nixStore, top!);
    const inputPath = [...closure.keys()].find((p) => p.endsWith('-a.drv'))!;
    const changed = clone(closure.get(inputPath)!.drv);
    changed.args.push('--extra');
    const resolve = (p: string) => (p === inputPath ? changed : closure.get(p)!.drv);
    const problems = verifyDerivation(closure.get(top!)!.drv, 'top', '/nix/store', resolve);
    expect(problems.map((p) => p.output)).toEqual(['doc', 'doc', 'out', 'out']);
  });
});

describe('derivations whose output paths cannot be computed', () => {
  const [top] = nixStore.instantiate(`let a = ${sh('a', 'echo > $out')}; in ${sh('top', 'cat ${a} > $out')}`);
  const all = loadClosure(nixStore, top!);
  const drv = all.get(top!)!.drv;
  const inputPath = [...drv.inputDrvs.keys()][0]!;

  test('an input output that the input does not have', () => {
    const bad = clone(drv);
    bad.inputDrvs.set(inputPath, ['lib']);
    const problems = verifyDerivation(bad, 'top', '/nix/store', resolverOf(all));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message).toBe(`inputDrvs["${inputPath}"]: input derivation ${inputPath} has no output "lib"`);
    expect(problems[0]!.output).toBeUndefined();
  });

  test('an input the resolver does not know', () => {
    expect(verifyDerivation(drv, 'top', '/nix/store', new Map()).map(String)).toEqual([`inputDrvs: input derivation ${inputPath} is not known`]);
    // A resolver's own error is not a problem with the derivation: it propagates.
    expect(() => verifyDerivation(drv, 'top', '/nix/store', () => {
      throw new RangeError('database down');
    })).toThrow('database down');
  });

  test('input derivations that form a cycle', () => {
    const loop = clone(all.get(inputPath)!.drv);
    loop.inputDrvs.set(inputPath, ['out']);
    expect(() => hashDerivationModulo(drv, (p) => (p === inputPath ? loop : drv), true)).toThrow(/input derivations form a cycle through/);
  });

  test('outputs of different kinds, several fixed outputs, a fixed output not named out', () => {
    const fixed = { path: drv.outputs.get('out')!.path, hashAlgo: 'sha256', hash: HI_SHA256 };
    const mixed = clone(drv);
    mixed.outputs.set('dev', fixed);
    expect(verifyDerivation(mixed, 'top', '/nix/store', resolverOf(all)).map(String)).toEqual([
      'outputs: outputs of different kinds cannot be mixed (out is input-addressed, dev is fixed)',
    ]);
    const twoFixed = clone(drv);
    twoFixed.outputs = new Map([['out', fixed], ['dev', fixed]]);
    expect(() => hashDerivationModulo(twoFixed, new Map(), true)).toThrow(/only one fixed output is allowed/);
    const notOut = clone(drv);
    notOut.outputs = new Map([['bin', fixed]]);
    expect(() => hashDerivationModulo(notOut, new Map(), true)).toThrow(/a single fixed output must be named "out", not "bin"/);
  });

  test('floating content-addressed and deferred outputs are refused, not guessed at', () => {
    const floating = clone(drv);
    floating.outputs = new Map([['out', { path: '', hashAlgo: 'r:sha256', hash: '' }]]);
    expect(() => hashDerivationModulo(floating, new Map(), true)).toThrow(DerivationError);
    expect(() => hashDerivationModulo(floating, new Map(), true)).toThrow(/floating outputs .* are not supported/);
    const deferred = clone(drv);
    deferred.outputs = new Map([['out', { path: '', hashAlgo: '', hash: '' }]]);
    expect(() => hashDerivationModulo(deferred, new Map(), true)).toThrow(/deferred outputs/);
  });

  test('a sync call handed an async resolver says to use the async variant', () => {
    const asyncResolve = (async () => all.get(inputPath)!.drv) as unknown as (p: string) => Derivation;
    expect(() => hashDerivationModulo(drv, asyncResolve, true)).toThrow(/use the \*Async variant/);
  });
});

describe('memoisation', () => {
  const [top] = nixStore.instantiate(`let a = ${sh('a', 'echo > $out')}; b = ${sh('b', 'cat ${a} > $out')}; in ${sh('top', 'cat ${b} > $out')}`);
  const all = loadClosure(nixStore, top!);
  const drv = all.get(top!)!.drv;

  test('each input is resolved once per resolver, however many calls', () => {
    const calls: string[] = [];
    const resolve = (p: string) => {
      calls.push(p);
      return all.get(p)!.drv;
    };
    const first = hashDerivationModulo(drv, resolve, true);
    expect(hashDerivationModulo(drv, resolve, true).hex).toBe(first.hex);
    expect(verifyDerivation(drv, 'top', '/nix/store', resolve)).toEqual([]);
    expect(calls.sort()).toEqual([...all.keys()].filter((p) => p !== top).sort());
  });

  test('a memo seeded with an input’s hash spares resolving that input’s closure', () => {
    const bPath = [...drv.inputDrvs.keys()][0]!;
    const bHash = hashDerivationModulo(all.get(bPath)!.drv, resolverOf(all), false);
    const memo = new Map<string, Hash>([[bPath, bHash]]);
    const nothing = () => {
      throw new Error('resolver called');
    };
    expect(verifyDerivation(drv, 'top', '/nix/store', nothing, memo)).toEqual([]);
    // A wrong seeded hash is believed, so the outputs no longer match: the memo matters.
    expect(verifyDerivation(drv, 'top', '/nix/store', nothing, new Map([[bPath, Hash.of('sha256', 'wrong')]]))).toHaveLength(2);
  });
});
