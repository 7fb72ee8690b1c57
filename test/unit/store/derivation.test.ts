import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import {
  computeOutputPaths,
  computeOutputPathsAsync,
  derivationName,
  derivationNameFromEnv,
  derivationStorePath,
  hashDerivationModulo,
  hashDerivationModuloAsync,
  parseDerivation,
  printDerivation,
  verifyDerivation,
  verifyDerivationAsync,
  type Derivation,
} from '../../../src/store/derivation.js';
import { gnuStore, HI_SHA256, loadClosure, nixStore, resolverOf, sh, type Store } from './drv-helpers.js';

/**
 * For every derivation of the closure: kiln prints the very bytes Nix wrote, computes the
 * .drv path Nix gave it and the output paths Nix wrote in it, and finds nothing wrong.
 */
function checkAgainstNix(store: Store, drvPath: string) {
  const all = loadClosure(store, drvPath);
  const resolve = resolverOf(all);
  for (const [path, { text, drv }] of all) {
    const name = derivationName(path);
    expect(printDerivation(drv)).toBe(text);
    expect(derivationNameFromEnv(drv)).toBe(name);
    expect(derivationStorePath(text, drv, name, store.storeDir)).toBe(path);
    const computed = computeOutputPaths(drv, name, store.storeDir, resolve);
    expect(Object.fromEntries(computed)).toEqual(Object.fromEntries([...drv.outputs].map(([n, o]) => [n, o.path])));
    expect(verifyDerivation(drv, name, store.storeDir, resolve)).toEqual([]);
  }
  return all;
}

const chainAndDiamond = `let
  fod = ${sh('src', 'printf hi > $out', `outputHashAlgo = "sha256"; outputHash = "${HI_SHA256}";`)};
  a = ${sh('a', 'cat ${fod} > $out')};
  b = ${sh('b', 'cat ${a} > $out')};
  c = ${sh('c', 'cat ${a} > $out; echo ${fod}')};
  multi = ${sh('m', 'echo > $out; echo > $dev', 'outputs = [ "out" "dev" ];')};
in ${sh('top', 'cat ${b} ${c} ${multi.dev} ${multi.out} > $out')}`;

describe('derivations made by nix-instantiate', () => {
  test('a simple derivation: same bytes, same .drv path, same output path', () => {
    checkAgainstNix(nixStore, nixStore.instantiate(sh('simple', 'echo hi > $out'))[0]!);
  });

  test('several outputs, which Nix writes sorted by name', () => {
    const [path] = nixStore.instantiate(sh('multi', 'echo > $out; echo > $dev; echo > $lib', 'outputs = [ "out" "dev" "lib" ];'));
    const all = checkAgainstNix(nixStore, path!);
    expect([...all.get(path!)!.drv.outputs.keys()]).toEqual(['dev', 'lib', 'out']);
  });

  test.each([
    ['flat sha256', `outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "${HI_SHA256}";`, 'sha256'],
    ['recursive sha256', 'outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "1h86vccx9vgcyrkj3zv4b7j3r8rrc0z0r4r6q3jvhf06s9hnm394";', 'r:sha256'],
    ['flat sha1', 'outputHashAlgo = "sha1"; outputHash = "c22b5f9178342609428d6f51b2c5af4c0bde6a42";', 'sha1'],
    ['recursive sha512 (not a source path)', `outputHashMode = "recursive"; outputHash = "sha512-${'A'.repeat(86)}==";`, 'r:sha512'],
    ['recursive md5', 'outputHashMode = "recursive"; outputHashAlgo = "md5"; outputHash = "0123456789abcdef0123456789abcdef";', 'r:md5'],
  ])('a fixed-output derivation, %s', (_, attrs, hashAlgo) => {
    const [path] = nixStore.instantiate(sh('fod', 'printf hi > $out', attrs));
    const all = checkAgainstNix(nixStore, path!);
    const out = all.get(path!)!.drv.outputs.get('out')!;
    expect(out.hashAlgo).toBe(hashAlgo);
    expect(out.hash).toMatch(/^[0-9a-f]+$/); // Nix writes hex whatever form it was given
  });

  test('a chain and a diamond of input derivations, with a fixed-output and a multi-output input', () => {
    const [top] = nixStore.instantiate(chainAndDiamond);
    const all = checkAgainstNix(nixStore, top!);
    expect([...all.keys()].map(derivationName).sort()).toEqual(['a', 'b', 'c', 'm', 'src', 'top']);
    expect(all.get(top!)!.drv.inputDrvs.size).toBe(3);
  });

  test('the same closure in a /gnu/store', () => {
    const store = gnuStore();
    const [top] = store.instantiate(chainAndDiamond);
    expect(top).toMatch(/^\/gnu\/store\/[0-9a-z]{32}-top\.drv$/);
    checkAgainstNix(store, top!);
  });

  test('strings that need escapes: quotes, backslashes, newlines, tabs, carriage returns, unicode', () => {
    const weird = 'q" b\\\\ n\\n t\\t r\\r ü ☃ 🎉 $ \\${x}';
    const [path] = nixStore.instantiate(sh('escapes', 'echo "a\\"b" > $out', `weird = "${weird.replace(/"/g, '\\"')}"; args2 = [ "\\t" ];`));
    const all = checkAgainstNix(nixStore, path!);
    const drv = all.get(path!)!.drv;
    expect(drv.env.get('weird')).toBe('q" b\\ n\n t\t r\r ü ☃ 🎉 $ ${x}');
    expect(drv.env.get('args2')).toBe('\t');
    expect(readFileSync(path!, 'utf8')).toContain('\\"');
  });

  test('sync, async and Map resolvers, with or without a shared memo, agree', async () => {
    const [top] = nixStore.instantiate(chainAndDiamond);
    const all = loadClosure(nixStore, top!);
    const drv = all.get(top!)!.drv;
    const map = new Map([...all].map(([p, l]) => [p, l.drv]));
    const asyncResolve = async (p: string): Promise<Derivation> => map.get(p)!;
    const sync = computeOutputPaths(drv, 'top', '/nix/store', map);
    expect(await computeOutputPathsAsync(drv, 'top', '/nix/store', asyncResolve)).toEqual(sync);
    expect(await verifyDerivationAsync(drv, 'top', '/nix/store', asyncResolve)).toEqual([]);
    const h = hashDerivationModulo(drv, resolverOf(all), true);
    expect((await hashDerivationModuloAsync(drv, asyncResolve, true)).hex).toBe(h.hex);
    expect(hashDerivationModulo(drv, map, true, new Map()).hex).toBe(h.hex);
    expect(sync.get('out')).toBe(drv.outputs.get('out')!.path);
  });
});

describe('hashDerivationModulo, as Nix defines it', () => {
  test('a fixed-output input changed in how it fetches changes nothing downstream', () => {
    // Two fixed-output derivations promising the same content by different builders.
    const fod = (builder: string) => sh('src', builder, `outputHashAlgo = "sha256"; outputHash = "${HI_SHA256}";`);
    const use = (src: string) => `let src = ${src}; in ${sh('use', 'cat ${src} > $out')}`;
    const [one] = nixStore.instantiate(use(fod('printf hi > $out')));
    const [two] = nixStore.instantiate(use(fod('printf h; printf i > $out')));
    expect(one).not.toBe(two);
    const a = loadClosure(nixStore, one!);
    const b = loadClosure(nixStore, two!);
    const outA = a.get(one!)!.drv.outputs.get('out')!.path;
    expect(b.get(two!)!.drv.outputs.get('out')!.path).toBe(outA); // Nix says so...
    expect(computeOutputPaths(b.get(two!)!.drv, 'use', '/nix/store', resolverOf(b)).get('out')).toBe(outA); // ...and so does kiln
  });

  test('a derivation written in another order hashes as Nix’s sorted one does', () => {
    const [path] = nixStore.instantiate(sh('order', 'echo > $out; echo > $dev', 'outputs = [ "out" "dev" ]; zz = "1"; aa = "2";'));
    const { text, drv } = loadClosure(nixStore, path!).get(path!)!;
    const shuffled: Derivation = { ...drv, env: new Map([...drv.env].reverse()), outputs: new Map([...drv.outputs].reverse()) };
    expect(printDerivation(shuffled)).not.toBe(text);
    const reparsed = parseDerivation(printDerivation(shuffled));
    expect(hashDerivationModulo(reparsed, new Map(), true).hex).toBe(hashDerivationModulo(drv, new Map(), true).hex);
    expect(verifyDerivation(reparsed, 'order', '/nix/store', new Map())).toEqual([]);
  });
});
