// Derivations made by the real nix-instantiate, in /nix/store or in a /gnu/store kept in a
// temporary directory, read back with their closure of input derivations.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDerivation, type Derivation } from '../../../src/store/derivation.js';
import { nix } from '../../helpers/nix.js';

export const SYSTEM = 'x86_64-linux';

/** A Nix expression for a /bin/sh derivation; `extra` is more attributes. */
export const sh = (name: string, script: string, extra = '') =>
  `derivation { name = "${name}"; system = "${SYSTEM}"; builder = "/bin/sh"; args = [ "-c" ${JSON.stringify(script)} ]; ${extra} }`;

/** printf hi | sha256sum */
export const HI_SHA256 = '8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4';

export interface Store {
  storeDir: string;
  instantiate(expr: string): string[];
  /** The file behind a store path. */
  real(path: string): string;
}

export const nixStore: Store = {
  storeDir: '/nix/store',
  instantiate: (expr) => nix('nix-instantiate', ['--expr', expr]).toString().trim().split('\n'),
  real: (path) => path,
};

/** A Nix store whose logical dir is /gnu/store, as Guix's is. */
export function gnuStore(): Store {
  const root = mkdtempSync(join(tmpdir(), 'kiln-gnu-'));
  const url = `local?store=/gnu/store&real=${root}/store&state=${root}/state&log=${root}/log`;
  return {
    storeDir: '/gnu/store',
    instantiate: (expr) => nix('nix-instantiate', ['--store', url, '--expr', expr]).toString().trim().split('\n'),
    real: (path) => join(root, 'store', path.slice('/gnu/store/'.length)),
  };
}

export interface Loaded {
  text: string;
  drv: Derivation;
}

/** Reads a .drv and, recursively, its inputs. */
export function loadClosure(store: Store, root: string): Map<string, Loaded> {
  const all = new Map<string, Loaded>();
  const todo = [root];
  for (let path = todo.pop(); path !== undefined; path = todo.pop()) {
    if (all.has(path)) continue;
    const text = readFileSync(store.real(path), 'utf8');
    const drv = parseDerivation(text, { storeDir: store.storeDir });
    all.set(path, { text, drv });
    todo.push(...drv.inputDrvs.keys());
  }
  return all;
}

export const resolverOf = (all: Map<string, Loaded>) => (p: string) => {
  const found = all.get(p);
  if (!found) throw new Error(`test resolver: ${p} is not in the closure`);
  return found.drv;
};
