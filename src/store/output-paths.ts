// Where a derivation's outputs go, as Nix computes it: hashDerivationModulo over the
// derivation and its inputs, then a store path per output; and the check that a .drv
// names the paths it yields, which catches a .drv that was changed after it was written.
import { DerivationError, printDerive } from './aterm.js';
import type { Derivation } from './derivation.js';
import { Hash, parseAlgorithm } from './hash.js';
import { makeFixedOutputPath, makeOutputPath, outputPathName, parseStorePath } from './store-path.js';

/** Input derivations by path. A Map works, as does a function that throws for unknown paths. */
export type DerivationResolver = ReadonlyMap<string, Derivation> | ((drvPath: string) => Derivation);
export type AsyncDerivationResolver = DerivationResolver | ((drvPath: string) => Promise<Derivation>);

export type DerivationType = { kind: 'input-addressed' } | { kind: 'fixed'; recursive: boolean; hash: Hash };

/**
 * Classifies a derivation as Nix's BasicDerivation::type() does, keeping the two kinds
 * kiln builds: all outputs input-addressed, or one fixed output named `out`.
 */
export function derivationType(drv: Derivation): DerivationType {
  const kinds = new Map<string, string>();
  for (const [name, o] of drv.outputs) {
    kinds.set(
      name,
      o.hashAlgo === '' ? (o.path === '' ? 'deferred' : 'input-addressed') : o.hash === '' ? 'floating' : o.hash === 'impure' ? 'impure' : 'fixed',
    );
  }
  const distinct = new Set(kinds.values());
  if (distinct.size === 0) throw new DerivationError('a derivation needs at least one output', { field: 'outputs' });
  if (distinct.size > 1) {
    const list = [...kinds].map(([name, kind]) => `${name} is ${kind}`).join(', ');
    throw new DerivationError(`outputs of different kinds cannot be mixed (${list})`, { field: 'outputs' });
  }
  const kind = [...distinct][0]!;
  if (kind === 'input-addressed') return { kind };
  if (kind !== 'fixed') {
    throw new DerivationError(`${kind} outputs (content-addressed derivations, paths known only after the build) are not supported`, { field: 'outputs' });
  }
  if (drv.outputs.size > 1) throw new DerivationError('only one fixed output is allowed', { field: 'outputs' });
  const out = drv.outputs.get('out');
  if (!out) throw new DerivationError(`a single fixed output must be named "out", not ${JSON.stringify([...drv.outputs.keys()][0])}`, { field: 'outputs' });
  const recursive = out.hashAlgo.startsWith('r:');
  try {
    return { kind, recursive, hash: Hash.parseDigest(parseAlgorithm(recursive ? out.hashAlgo.slice(2) : out.hashAlgo), out.hash) };
  } catch (err) {
    throw new DerivationError((err as Error).message, { field: 'outputs["out"]', cause: err });
  }
}

/** The promised content hash of a fixed-output derivation; undefined for any other. */
export function fixedOutput(drv: Derivation): { recursive: boolean; hash: Hash } | undefined {
  const type = derivationType(drv);
  return type.kind === 'fixed' ? { recursive: type.recursive, hash: type.hash } : undefined;
}

/**
 * Hashes of input derivations by path. Pass one Map to many calls over a closure (it
 * may be seeded with hashes kept from earlier checks); without one, hashes are
 * memoised per resolver, which must then give the same derivation for a path every
 * time (as a store does: the path names the text).
 */
export type ModuloMemo = Map<string, Hash>;

/**
 * Nix's hashDerivationModulo. A fixed-output derivation hashes to its promised content
 * and path (so that changing how a source is fetched changes nothing downstream); any
 * other to its text with each input derivation replaced by that input's own hash
 * modulo, and, for computing its own output paths (`maskOutputs`), its output paths
 * blanked. A fixed-output input's path is recomputed from its .drv path's name and
 * store, as Nix does; for a fixed-output `drv` itself, from the name and store of the
 * path written in it (verifyDerivation checks that path).
 */
export function hashDerivationModulo(drv: Derivation, resolve: DerivationResolver, maskOutputs = false, memo?: ModuloMemo): Hash {
  return runSync(moduloWalk(drv, rootPlace(drv), maskOutputs, memoFor(resolve, memo)), resolve);
}

export async function hashDerivationModuloAsync(drv: Derivation, resolve: AsyncDerivationResolver, maskOutputs = false, memo?: ModuloMemo): Promise<Hash> {
  return runAsync(moduloWalk(drv, rootPlace(drv), maskOutputs, memoFor(resolve, memo)), resolve);
}

/** What every output's path should be, as Nix computes it. */
export function computeOutputPaths(drv: Derivation, name: string, storeDir: string, resolve: DerivationResolver, memo?: ModuloMemo): Map<string, string> {
  return runSync(outputPathsWalk(drv, { name, storeDir }, memoFor(resolve, memo)), resolve);
}

export async function computeOutputPathsAsync(
  drv: Derivation,
  name: string,
  storeDir: string,
  resolve: AsyncDerivationResolver,
  memo?: ModuloMemo,
): Promise<Map<string, string>> {
  return runAsync(outputPathsWalk(drv, { name, storeDir }, memoFor(resolve, memo)), resolve);
}

/** One thing wrong with a derivation; prints as its message. */
export class DerivationProblem {
  constructor(
    readonly message: string,
    /** The output at fault; undefined when the derivation as a whole is. */
    readonly output?: string,
    /** e.g. `outputs["dev"].path` or `env["dev"]`. */
    readonly field?: string,
    readonly expected?: string,
    readonly found?: string,
  ) {}

  toString(): string {
    return this.message;
  }
}

/**
 * Recomputes every output path and compares it with the path the derivation names and
 * with the environment variable of the same name. Returns one problem per wrong field
 * (none when the derivation is what it claims to be), or the one reason no path could
 * be computed. Errors from the resolver itself propagate.
 */
export function verifyDerivation(drv: Derivation, name: string, storeDir: string, resolve: DerivationResolver, memo?: ModuloMemo): DerivationProblem[] {
  let expected: Map<string, string>;
  try {
    expected = computeOutputPaths(drv, name, storeDir, resolve, memo);
  } catch (err) {
    return [problemOf(err)];
  }
  return compareOutputs(drv, expected);
}

export async function verifyDerivationAsync(
  drv: Derivation,
  name: string,
  storeDir: string,
  resolve: AsyncDerivationResolver,
  memo?: ModuloMemo,
): Promise<DerivationProblem[]> {
  let expected: Map<string, string>;
  try {
    expected = await computeOutputPathsAsync(drv, name, storeDir, resolve, memo);
  } catch (err) {
    return [problemOf(err)];
  }
  return compareOutputs(drv, expected);
}

function problemOf(err: unknown): DerivationProblem {
  if (err instanceof DerivationError) return new DerivationProblem(err.message, undefined, err.field);
  if (err instanceof Error && (err.name === 'StorePathError' || err.name === 'HashError')) return new DerivationProblem(err.message);
  throw err;
}

function compareOutputs(drv: Derivation, expected: Map<string, string>): DerivationProblem[] {
  const problems: DerivationProblem[] = [];
  for (const [output, o] of drv.outputs) {
    const want = expected.get(output)!;
    if (o.path !== want) {
      problems.push(new DerivationProblem(`output ${output} is ${o.path} but the derivation yields ${want}`, output, `outputs[${JSON.stringify(output)}].path`, want, o.path));
    }
    const env = drv.env.get(output);
    if (env !== want) {
      const found = env === undefined ? 'missing' : JSON.stringify(env);
      problems.push(new DerivationProblem(`environment variable ${output} is ${found}, not the output path ${want}`, output, `env[${JSON.stringify(output)}]`, want, env));
    }
  }
  return problems;
}

// ---- the walk over input derivations ----------------------------------------------

interface Memo {
  hashes: ModuloMemo;
  /** Output names of the inputs hashed here; unknown for hashes a caller seeded. */
  outputs: Map<string, ReadonlySet<string>>;
}

const memos = new WeakMap<object, Memo>();

function memoFor(resolve: object, hashes?: ModuloMemo): Memo {
  const key = hashes ?? resolve;
  let memo = memos.get(key);
  if (!memo) memos.set(key, (memo = { hashes: hashes ?? new Map(), outputs: new Map() }));
  return memo;
}

interface Place {
  name: string;
  storeDir: string;
}

/** Where a fixed-output root's output lives, by the path written in it. */
function rootPlace(drv: Derivation): Place | undefined {
  const out = drv.outputs.get('out');
  if (!out?.path || out.hash === '') return undefined;
  try {
    const { name, storeDir } = parseStorePath(out.path);
    return { name, storeDir };
  } catch (err) {
    throw new DerivationError((err as Error).message, { field: 'outputs["out"].path', cause: err });
  }
}

/**
 * A computation that yields the path of each input derivation it needs and is sent
 * the derivation back; one algorithm then serves sync and async resolvers alike.
 */
type Walk<T> = Generator<string, T, Derivation>;

function lookup(resolve: AsyncDerivationResolver, path: string): Derivation | Promise<Derivation> {
  if (typeof resolve === 'function') return resolve(path);
  const drv = resolve.get(path);
  if (!drv) throw new DerivationError(`input derivation ${path} is not known`, { field: 'inputDrvs' });
  return drv;
}

function runSync<T>(walk: Walk<T>, resolve: DerivationResolver): T {
  let step = walk.next();
  while (!step.done) {
    const drv = lookup(resolve, step.value);
    if (drv instanceof Promise) {
      drv.catch(() => undefined); // nobody will await it
      throw new TypeError('the resolver returned a promise; use the *Async variant');
    }
    step = walk.next(drv);
  }
  return step.value;
}

async function runAsync<T>(walk: Walk<T>, resolve: AsyncDerivationResolver): Promise<T> {
  let step = walk.next();
  while (!step.done) step = walk.next(await lookup(resolve, step.value));
  return step.value;
}

function* outputPathsWalk(drv: Derivation, { name, storeDir }: Place, memo: Memo): Walk<Map<string, string>> {
  const type = derivationType(drv);
  if (type.kind === 'fixed') return new Map([['out', makeFixedOutputPath(type.recursive, type.hash, outputPathName(name, 'out'), storeDir)]]);
  const h = yield* moduloWalk(drv, undefined, true, memo);
  return new Map([...drv.outputs.keys()].map((output) => [output, makeOutputPath(output, h, name, storeDir)]));
}

/**
 * Depth-first over the inputs not yet memoised, hashing each after its own inputs.
 * Iterative, because real closures (a Guix bootstrap) are hundreds of levels deep.
 */
function* moduloWalk(root: Derivation, rootPlace: Place | undefined, maskOutputs: boolean, memo: Memo): Walk<Hash> {
  const onPath = new Set<string>();
  const inputsOf = (drv: Derivation) => (derivationType(drv).kind === 'fixed' ? [] : [...drv.inputDrvs.keys()].reverse());
  const stack = [{ path: undefined as string | undefined, drv: root, pending: inputsOf(root) }];
  for (;;) {
    const top = stack[stack.length - 1]!;
    const next = top.pending.pop();
    if (next !== undefined) {
      if (memo.hashes.has(next)) continue;
      if (onPath.has(next)) throw new DerivationError(`input derivations form a cycle through ${next}`, { field: 'inputDrvs' });
      const drv: Derivation = yield next;
      onPath.add(next);
      stack.push({ path: next, drv, pending: blame(next, () => inputsOf(drv)) });
      continue;
    }
    stack.pop();
    if (top.path === undefined) return hashOne(top.drv, rootPlace, maskOutputs, memo);
    const path = top.path;
    const hash = blame(path, () => {
      const { storeDir, name } = parseStorePath(path);
      if (!name.endsWith('.drv')) throw new DerivationError(`${path} does not end in .drv`);
      return hashOne(top.drv, { name: name.slice(0, -'.drv'.length), storeDir }, false, memo);
    });
    memo.hashes.set(path, hash);
    memo.outputs.set(path, new Set(top.drv.outputs.keys()));
    onPath.delete(path);
  }
}

/** Says which input derivation an error is about. */
function blame<T>(path: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (!(err instanceof Error) || !['DerivationError', 'StorePathError', 'HashError'].includes(err.name)) throw err;
    throw new DerivationError(`input derivation ${path}: ${err.message}`, { field: 'inputDrvs', cause: err });
  }
}

/** One derivation's hash modulo, its inputs' being memoised already. */
function hashOne(drv: Derivation, place: Place | undefined, maskOutputs: boolean, memo: Memo): Hash {
  const type = derivationType(drv);
  if (type.kind === 'fixed') {
    // Recomputed, not read from the file: Nix never trusts the written path.
    if (!place) throw new DerivationError('a fixed output needs a path', { field: 'outputs["out"].path' });
    const path = makeFixedOutputPath(type.recursive, type.hash, outputPathName(place.name, 'out'), place.storeDir);
    return Hash.of('sha256', `fixed:out:${type.recursive ? 'r:' : ''}${type.hash.algorithm}:${type.hash.hex}:${path}`);
  }
  const inputs = new Map<string, Set<string>>();
  for (const [path, outs] of drv.inputDrvs) {
    const hash = memo.hashes.get(path)!;
    const known = memo.outputs.get(path);
    const set = inputs.get(hash.hex) ?? new Set<string>();
    for (const o of outs) {
      if (known && !known.has(o)) throw new DerivationError(`input derivation ${path} has no output ${JSON.stringify(o)}`, { field: `inputDrvs[${JSON.stringify(path)}]` });
      set.add(o);
    }
    inputs.set(hash.hex, set);
  }
  // Printed as Nix prints its own structures (std::map and std::set: sorted by bytes,
  // no duplicates), so that a file written in another order still hashes as Nix's does.
  return Hash.of(
    'sha256',
    printDerive({
      outputs: sortedEntries(drv.outputs).map(([n, o]) => [n, maskOutputs ? '' : o.path, o.hashAlgo, o.hash] as const),
      inputDrvs: sortedEntries(inputs).map(([h, outs]) => [h, [...outs].sort(byBytes)] as const),
      inputSrcs: [...new Set(drv.inputSrcs)].sort(byBytes),
      platform: drv.platform,
      builder: drv.builder,
      args: drv.args,
      env: sortedEntries(drv.env).map(([k, v]) => [k, maskOutputs && drv.outputs.has(k) ? '' : v] as const),
    }),
  );
}

function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function sortedEntries<V>(map: ReadonlyMap<string, V>): [string, V][] {
  return [...map].sort(([a], [b]) => byBytes(a, b));
}
