// Making an input-addressed derivation the way Nix's `derivation` builtin does: outputs
// start empty (in the outputs and in the environment), the output paths are computed
// from the masked derivation, filled in, and the .drv file's own path follows from its
// bytes. For tools and tests that need derivations without a Nix evaluator.
import { derivationStorePath, printDerivation, type Derivation } from './derivation.js';
import { computeOutputPaths, type DerivationResolver } from './output-paths.js';

export interface DerivationSpec {
  name: string;
  system: string;
  builder: string;
  args?: string[];
  /** Extra environment; name, system, builder and the outputs are set as Nix sets them. */
  env?: Record<string, string>;
  /** Output names (default ["out"]). */
  outputs?: string[];
  /** Input derivations (.drv paths) and which of their outputs are used. */
  inputDrvs?: Map<string, string[]>;
  inputSrcs?: string[];
}

export interface MadeDerivation {
  path: string;
  text: string;
  drv: Derivation;
  /** Output name → store path. */
  outputs: Map<string, string>;
}

export function makeDerivation(spec: DerivationSpec, storeDir: string, resolve: DerivationResolver): MadeDerivation {
  // The environment lists outputs as given; the derivation's outputs are sorted by name.
  const outputNames = [...(spec.outputs ?? ['out'])].sort();
  const givenOrder = spec.outputs ?? ['out'];
  const env = new Map<string, string>(Object.entries({ ...spec.env, builder: spec.builder, name: spec.name, system: spec.system }));
  if (outputNames.length > 1 || outputNames[0] !== 'out') env.set('outputs', givenOrder.join(' '));
  for (const o of outputNames) env.set(o, '');
  // Any path will do until they are computed: the hash masks the outputs (as Nix does).
  const placeholder = `${storeDir}/${'0'.repeat(32)}-${spec.name}`;
  const drv: Derivation = {
    outputs: new Map(outputNames.map((o) => [o, { path: placeholder, hashAlgo: '', hash: '' }])),
    inputDrvs: new Map([...(spec.inputDrvs ?? new Map<string, string[]>())].map(([p, outs]) => [p, [...outs].sort()])),
    inputSrcs: [...(spec.inputSrcs ?? [])].sort(),
    platform: spec.system,
    builder: spec.builder,
    args: spec.args ?? [],
    env: new Map([...env].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  };
  drv.inputDrvs = new Map([...drv.inputDrvs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const outputs = computeOutputPaths(drv, spec.name, storeDir, resolve);
  for (const [o, path] of outputs) {
    drv.outputs.set(o, { path, hashAlgo: '', hash: '' });
    drv.env.set(o, path);
  }
  const text = printDerivation(drv);
  return { path: derivationStorePath(text, drv, spec.name, storeDir), text, drv, outputs };
}
