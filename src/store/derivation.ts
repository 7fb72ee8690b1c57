// Derivations (.drv files, ATerm `Derive(...)`): parsed with the checks Nix makes when it
// reads one, printed back byte for byte, named, and given their own store path. Output
// path computation lives in output-paths.ts and is re-exported here.
import { ATermReader, decodeDerivationText, DerivationError, printDerive } from './aterm.js';
import { Hash, parseAlgorithm, type HashAlgorithm } from './hash.js';
import { makeTextPath, parseStorePath, validateName } from './store-path.js';

export { DerivationError };
export {
  computeOutputPaths,
  computeOutputPathsAsync,
  DerivationProblem,
  derivationType,
  fixedOutput,
  hashDerivationModulo,
  hashDerivationModuloAsync,
  verifyDerivation,
  verifyDerivationAsync,
  type AsyncDerivationResolver,
  type DerivationResolver,
  type DerivationType,
} from './output-paths.js';

export interface DerivationOutput {
  /** Empty for floating content-addressed and deferred outputs, which kiln does not build. */
  path: string;
  /** For content-addressed outputs: `sha256`, or `r:sha256` for a hash of the NAR. */
  hashAlgo: string;
  /** For fixed outputs: the expected hash, as written (Nix writes hex). */
  hash: string;
}

/** A parsed derivation; maps and lists keep the file's order so printing gives the same bytes. */
export interface Derivation {
  outputs: Map<string, DerivationOutput>;
  inputDrvs: Map<string, string[]>;
  inputSrcs: string[];
  platform: string;
  builder: string;
  args: string[];
  env: Map<string, string>;
}

export interface ParseOptions {
  /** Every path must be in this store; by default, in the store of the first path seen. */
  storeDir?: string;
  /** The most entries each list may have (default: no limit); a longer list is refused as soon as it is seen. */
  maxCounts?: Partial<Record<'outputs' | 'inputDrvs' | 'inputSrcs' | 'args' | 'env', number>>;
}

/**
 * Parses a .drv, raising only DerivationError. Beyond the syntax it checks what Nix
 * checks when it reads one (store paths, hash algorithms, fixed hashes), and refuses
 * duplicates and escapes that Nix never writes, so that printing gives the same bytes.
 */
export function parseDerivation(input: string | Uint8Array, opts: ParseOptions = {}): Derivation {
  const text = typeof input === 'string' ? input : decodeDerivationText(input);
  const r = new ATermReader(text);
  let storeDir = opts.storeDir;
  // Runs a semantic check on a string just read, blaming `field` at the string's offset.
  const checked = <T>(field: string, read: () => T, check: (value: T) => void): T => {
    const start = r.mark();
    const value = read();
    try {
      check(value);
    } catch (err) {
      if (err instanceof DerivationError) throw err;
      throw new DerivationError((err as Error).message, { field, offset: r.offset(start), cause: err });
    }
    return value;
  };
  const storePath = (path: string) => {
    const p = parseStorePath(path, storeDir);
    storeDir ??= p.storeDir;
    return p;
  };
  const unique = (seen: { has(k: string): boolean }, what: string) => (key: string) => {
    if (seen.has(key)) throw new Error(`${what} ${JSON.stringify(key)} appears twice`);
  };

  const max = opts.maxCounts ?? {};
  r.expect('Derive(');
  const outputs = new Map<string, DerivationOutput>();
  r.list(() => {
    r.expect('(');
    const name = checked('outputs', () => r.rawString(), (n) => {
      unique(outputs, 'output')(n);
      validateName(n, 'output name');
    });
    const field = `outputs[${JSON.stringify(name)}]`;
    const parts = ['path', 'hashAlgo', 'hash'].map((part) => {
      r.expect(',');
      return { part, at: r.mark(), value: r.rawString() };
    }) as [Part, Part, Part];
    r.expect(')');
    checkOutput(parts, storePath, (part, err) => {
      throw new DerivationError(err.message, { field: `${field}.${part.part}`, offset: r.offset(part.at), cause: err });
    });
    const [{ value: outPath }, { value: hashAlgo }, { value: hash }] = parts;
    outputs.set(name, { path: outPath, hashAlgo, hash });
  }, max.outputs, 'outputs');
  if (outputs.size === 0) r.fail('a derivation needs at least one output');

  r.expect(',');
  const inputDrvs = new Map<string, string[]>();
  r.list(() => {
    r.expect('(');
    const path = checked('inputDrvs', () => r.rawString(), (p) => {
      unique(inputDrvs, 'input derivation')(p);
      if (!storePath(p).name.endsWith('.drv')) throw new Error(`${p} does not end in .drv`);
    });
    r.expect(',');
    const seen = new Set<string>();
    const outs = r.list(() => checked(`inputDrvs[${JSON.stringify(path)}]`, () => r.rawString(), (o) => {
      unique(seen, 'output')(o);
      seen.add(o);
    }));
    r.expect(')');
    inputDrvs.set(path, outs);
  }, max.inputDrvs, 'input derivations');

  r.expect(',');
  const srcs = new Set<string>();
  const inputSrcs = r.list(() => checked('inputSrcs', () => r.rawString(), (p) => {
    unique(srcs, 'input source')(p);
    srcs.add(p);
    storePath(p);
  }), max.inputSrcs, 'input sources');
  r.expect(',');
  const platform = r.rawString();
  r.expect(',');
  const builder = r.string();
  r.expect(',');
  const args = r.list(() => r.string(), max.args, 'arguments');
  r.expect(',');
  const env = new Map<string, string>();
  r.list(() => {
    const [key, value] = r.tuple(
      () => checked('env', () => r.string(), unique(env, 'environment variable')),
      () => r.string(),
    ) as [string, string];
    env.set(key, value);
  }, max.env, 'environment variables');
  r.expect(')');
  r.end();
  return { outputs, inputDrvs, inputSrcs, platform, builder, args, env };
}

interface Part {
  part: string;
  at: number;
  value: string;
}

/** The four forms of output Nix reads: input-addressed, fixed, floating (or impure), deferred. */
function checkOutput([path, hashAlgo, hash]: [Part, Part, Part], storePath: (p: string) => unknown, fail: (part: Part, err: Error) => never): void {
  const attempt = (part: Part, check: () => unknown) => {
    try {
      check();
    } catch (err) {
      fail(part, err as Error);
    }
  };
  if (hashAlgo.value === '') {
    if (hash.value !== '') fail(hash, new Error('a hash without a hashAlgo'));
    if (path.value !== '') attempt(path, () => storePath(path.value)); // empty: a deferred output
    return;
  }
  const algo = hashAlgo.value.startsWith('r:') ? hashAlgo.value.slice(2) : hashAlgo.value;
  let algorithm: HashAlgorithm = 'sha256';
  attempt(hashAlgo, () => (algorithm = parseAlgorithm(algo)));
  if (hash.value === '' || hash.value === 'impure') {
    // Floating content-addressed or impure: the path is known only after the build.
    if (path.value !== '') fail(path, new Error(`a path for an output with no fixed hash (hashAlgo ${hashAlgo.value})`));
    return;
  }
  attempt(hash, () => Hash.parseDigest(algorithm, hash.value));
  attempt(path, () => storePath(path.value));
}

/** The derivation as Nix writes it. */
export function printDerivation(drv: Derivation): string {
  // The fields Nix writes unescaped must have nothing to escape, or the text would not parse.
  const unescaped = (field: string, s: string) => {
    if (/["\\]/.test(s)) throw new DerivationError(`${JSON.stringify(s)} has a quote or backslash, which Nix cannot write here`, { field });
    return s;
  };
  return printDerive({
    outputs: [...drv.outputs].map(([name, o]) => {
      const field = `outputs[${JSON.stringify(name)}]`;
      return [unescaped('outputs', name), unescaped(field, o.path), unescaped(field, o.hashAlgo), unescaped(field, o.hash)] as const;
    }),
    inputDrvs: [...drv.inputDrvs].map(([path, outs]) => [unescaped('inputDrvs', path), outs.map((o) => unescaped(`inputDrvs[${JSON.stringify(path)}]`, o))] as const),
    inputSrcs: drv.inputSrcs.map((p) => unescaped('inputSrcs', p)),
    platform: unescaped('platform', drv.platform),
    builder: drv.builder,
    args: drv.args,
    env: [...drv.env],
  });
}

/** The derivation's name from its .drv path (`…/<hash>-hello.drv` → `hello`). */
export function derivationName(drvPath: string): string {
  let name: string;
  try {
    name = parseStorePath(drvPath).name;
  } catch (err) {
    throw new DerivationError((err as Error).message, { cause: err });
  }
  if (!name.endsWith('.drv')) throw new DerivationError(`${drvPath} does not end in .drv`);
  return name.slice(0, -'.drv'.length);
}

/** The derivation's name from its `name` environment variable, as `derivation` sets it. */
export function derivationNameFromEnv(drv: Derivation): string {
  const name = drv.env.get('name');
  if (name === undefined) throw new DerivationError('there is no name variable', { field: 'env' });
  try {
    return validateName(name, 'derivation name');
  } catch (err) {
    throw new DerivationError((err as Error).message, { field: 'env["name"]', cause: err });
  }
}

/** What a .drv file refers to: its input sources and input derivations. */
export function derivationReferences(drv: Derivation): string[] {
  return [...new Set([...drv.inputSrcs, ...drv.inputDrvs.keys()])].sort();
}

/**
 * The .drv file's own store path: a text path of its exact bytes whose references are
 * its inputs (its outputs are not references: they need not exist).
 */
export function derivationStorePath(text: string | Uint8Array, drv: Derivation, name: string, storeDir: string): string {
  try {
    return makeTextPath(`${name}.drv`, text, derivationReferences(drv), storeDir);
  } catch (err) {
    throw new DerivationError((err as Error).message, { cause: err });
  }
}
