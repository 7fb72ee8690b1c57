// Derivations (.drv files, ATerm `Derive(...)`): parsing and printing byte for byte as
// Nix does, Nix's hashDerivationModulo, and recomputing output paths to catch a .drv
// that was changed after it was written.
import { ATermReader, DerivationError, quote } from './aterm.js';
import { Hash, HashError, parseAlgorithm } from './hash.js';
import { makeFixedOutputPath, makeOutputPath, makeTextPath, parseStorePath, StorePathError } from './store-path.js';

export { DerivationError };

export interface DerivationOutput {
  /** Empty for content-addressed (floating) outputs, which kiln does not build. */
  path: string;
  /** For fixed outputs: `sha256`, or `r:sha256` for a NAR hash. */
  hashAlgo: string;
  /** For fixed outputs: the expected hash, in hex. */
  hash: string;
}

/** A parsed derivation; maps keep the file's order so printing gives the same bytes. */
export interface Derivation {
  outputs: Map<string, DerivationOutput>;
  inputDrvs: Map<string, string[]>;
  inputSrcs: string[];
  platform: string;
  builder: string;
  args: string[];
  env: Map<string, string>;
}

/** Resolves an input derivation's path to its parsed derivation. */
export type DerivationResolver = (drvPath: string) => Derivation;

export function parseDerivation(text: string): Derivation {
  const r = new ATermReader(text);
  r.expect('Derive(');
  const outputs = new Map<string, DerivationOutput>();
  for (const [name, path, hashAlgo, hash] of r.list(() => tuple(r, 4))) {
    if (outputs.has(name!)) throw new DerivationError(`output ${JSON.stringify(name)} appears twice`);
    outputs.set(name!, { path: path!, hashAlgo: hashAlgo!, hash: hash! });
  }
  if (outputs.size === 0) throw new DerivationError('the derivation has no outputs');
  r.expect(',');
  const inputDrvs = new Map<string, string[]>();
  for (const [path, outs] of r.list(() => {
    r.expect('(');
    const path = r.string();
    r.expect(',');
    const outs = r.list(() => r.string());
    r.expect(')');
    return [path, outs] as const;
  })) {
    if (inputDrvs.has(path)) throw new DerivationError(`input derivation ${path} appears twice`);
    inputDrvs.set(path, outs);
  }
  r.expect(',');
  const inputSrcs = r.list(() => r.string());
  r.expect(',');
  const platform = r.string();
  r.expect(',');
  const builder = r.string();
  r.expect(',');
  const args = r.list(() => r.string());
  r.expect(',');
  const env = new Map<string, string>();
  for (const [key, value] of r.list(() => tuple(r, 2))) {
    if (env.has(key!)) throw new DerivationError(`environment variable ${JSON.stringify(key)} appears twice`);
    env.set(key!, value!);
  }
  r.expect(')');
  r.end();
  return { outputs, inputDrvs, inputSrcs, platform, builder, args, env };
}

function tuple(r: ATermReader, n: number): string[] {
  r.expect('(');
  const out = [r.string()];
  for (let i = 1; i < n; i++) {
    r.expect(',');
    out.push(r.string());
  }
  r.expect(')');
  return out;
}

const list = (items: string[]) => '[' + items.join(',') + ']';

export function printDerivation(drv: Derivation, opts: { maskOutputs?: boolean; inputDrvs?: Map<string, string[]> } = {}): string {
  const mask = opts.maskOutputs ?? false;
  const outputs = [...drv.outputs].map(([name, o]) => `(${[name, mask ? '' : o.path, o.hashAlgo, o.hash].map(quote).join(',')})`);
  const inputs = [...(opts.inputDrvs ?? drv.inputDrvs)].map(([path, outs]) => `(${quote(path)},${list(outs.map(quote))})`);
  const env = [...drv.env].map(([k, v]) => `(${quote(k)},${quote(mask && drv.outputs.has(k) ? '' : v)})`);
  return (
    'Derive(' +
    [list(outputs), list(inputs), list(drv.inputSrcs.map(quote)), quote(drv.platform), quote(drv.builder), list(drv.args.map(quote)), list(env)].join(',') +
    ')'
  );
}

/** The derivation's name from its .drv path (`…/<hash>-hello.drv` → `hello`). */
export function derivationName(drvPath: string): string {
  const { name } = parseStorePath(drvPath);
  if (!name.endsWith('.drv')) throw new DerivationError(`${drvPath} does not end in .drv`);
  return name.slice(0, -'.drv'.length);
}

/** What a .drv file refers to: its input sources and input derivations. */
export function derivationReferences(drv: Derivation): string[] {
  return [...new Set([...drv.inputSrcs, ...drv.inputDrvs.keys()])].sort();
}

/** The .drv file's own store path: a text path of its exact bytes. */
export function derivationStorePath(text: string, drv: Derivation, name: string, storeDir: string): string {
  return makeTextPath(`${name}.drv`, text, derivationReferences(drv), storeDir);
}

/** A derivation with one output `out` whose content hash is given in advance. */
export function fixedOutput(drv: Derivation): { recursive: boolean; hash: Hash; path: string } | undefined {
  const out = drv.outputs.get('out');
  if (drv.outputs.size !== 1 || !out || !out.hash) return undefined;
  const recursive = out.hashAlgo.startsWith('r:');
  try {
    const algorithm = parseAlgorithm(recursive ? out.hashAlgo.slice(2) : out.hashAlgo);
    return { recursive, hash: Hash.parseDigest(algorithm, out.hash), path: out.path };
  } catch (err) {
    throw new DerivationError(`output out has a bad fixed hash: ${(err as Error).message}`);
  }
}

/**
 * Nix's hashDerivationModulo. A fixed-output derivation hashes to its promised content
 * (so that changing how it is fetched changes nothing downstream); any other hashes to
 * its text with each input derivation replaced by that input's own hash modulo, and,
 * when computing its own output paths, with its output paths blanked.
 */
export function hashDerivationModulo(
  drv: Derivation,
  resolve: DerivationResolver,
  maskOutputs: boolean,
  memo: Map<string, Hash> = new Map(),
): Hash {
  const fixed = fixedOutput(drv);
  if (fixed) {
    return Hash.of('sha256', `fixed:out:${fixed.recursive ? 'r:' : ''}${fixed.hash.algorithm}:${fixed.hash.hex}:${fixed.path}`);
  }
  for (const [name, o] of drv.outputs) {
    if (!o.path) throw new DerivationError(`output ${name} has no path: content-addressed derivations are not supported`);
  }
  const byHash = new Map<string, Set<string>>();
  for (const [path, outs] of drv.inputDrvs) {
    let h = memo.get(path);
    if (!h) {
      h = hashDerivationModulo(resolve(path), resolve, false, memo);
      memo.set(path, h);
    }
    const set = byHash.get(h.hex) ?? new Set<string>();
    for (const o of outs) set.add(o);
    byHash.set(h.hex, set);
  }
  const inputs = new Map([...byHash].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([h, outs]) => [h, [...outs].sort()]));
  return Hash.of('sha256', printDerivation(drv, { maskOutputs, inputDrvs: inputs }));
}

/** What every output's path should be, as Nix computes it. */
export function computeOutputPaths(drv: Derivation, name: string, storeDir: string, resolve: DerivationResolver): Map<string, string> {
  const fixed = fixedOutput(drv);
  if (fixed) return new Map([['out', makeFixedOutputPath(fixed.recursive, fixed.hash, name, storeDir)]]);
  const h = hashDerivationModulo(drv, resolve, true);
  return new Map([...drv.outputs.keys()].map((output) => [output, makeOutputPath(output, h, name, storeDir)]));
}

/**
 * Recomputes every output path and compares it with the path the derivation names and
 * with the environment variable of the same name. Returns the problems, one per wrong
 * output; none when the derivation is what it claims to be.
 */
export function verifyDerivation(drv: Derivation, name: string, storeDir: string, resolve: DerivationResolver): string[] {
  let expected: Map<string, string>;
  try {
    expected = computeOutputPaths(drv, name, storeDir, resolve);
  } catch (err) {
    if (err instanceof DerivationError || err instanceof HashError || err instanceof StorePathError) return [err.message];
    throw err;
  }
  const problems: string[] = [];
  for (const [output, o] of drv.outputs) {
    const want = expected.get(output)!;
    if (o.path !== want) problems.push(`output ${output} is ${o.path} but the derivation yields ${want}`);
    else if (drv.env.get(output) !== want) problems.push(`environment variable ${output} is ${JSON.stringify(drv.env.get(output) ?? null)}, not the output path ${want}`);
  }
  return problems;
}
