// makeDerivation gives the same .drv bytes and paths as nix-instantiate.
import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { parseDerivation, type Derivation } from '../../../src/store/derivation.js';
import { makeDerivation } from '../../../src/store/make-derivation.js';
import { nixStore, SYSTEM } from './drv-helpers.js';

describe('makeDerivation', () => {
  test('matches nix-instantiate for a multi-output derivation with an input derivation', () => {
    const nonce = randomUUID().slice(0, 8);
    const [leafPath, topPath] = nixStore.instantiate(`let
      leaf = derivation { name = "leaf-${nonce}"; system = "${SYSTEM}"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
      top = derivation { name = "top-${nonce}"; system = "${SYSTEM}"; builder = "/bin/sh"; outputs = [ "out" "dev" ]; FOO = "bar"; args = [ "-c" "cat \${leaf}" ]; };
    in [ leaf top ]`);
    const known = new Map<string, Derivation>();
    const leaf = makeDerivation({ name: `leaf-${nonce}`, system: SYSTEM, builder: '/bin/sh', args: ['-c', 'echo > $out'] }, '/nix/store', known);
    expect(leaf.path).toBe(leafPath);
    expect(leaf.text).toBe(readFileSync(leafPath!, 'utf8'));
    known.set(leaf.path, leaf.drv);
    const top = makeDerivation(
      {
        name: `top-${nonce}`,
        system: SYSTEM,
        builder: '/bin/sh',
        outputs: ['out', 'dev'],
        env: { FOO: 'bar' },
        args: ['-c', `cat ${leaf.outputs.get('out')}`],
        inputDrvs: new Map([[leaf.path, ['out']]]),
      },
      '/nix/store',
      known,
    );
    expect(top.text).toBe(readFileSync(topPath!, 'utf8'));
    expect(top.path).toBe(topPath);
    expect(parseDerivation(top.text).outputs.get('dev')!.path).toBe(top.outputs.get('dev'));
  });
});
