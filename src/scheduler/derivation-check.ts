// Checks a submitted derivation and its closure before anything is stored: every text
// parses, hashes to the path it claims, and yields the output paths it names; every
// input derivation is either in the request or already known to the coordinator.
import { invalidArgument } from '../errors.js';
import {
  derivationName,
  derivationStorePath,
  hashDerivationModulo,
  parseDerivation,
  verifyDerivation,
  type Derivation,
} from '../store/derivation.js';
import { Hash } from '../store/hash.js';
import { parseStorePath } from '../store/store-path.js';
import { requiredFeatures } from './placement.js';
import { DEFAULT_INPUT_LIMITS, type DerivationLimits } from '../protocol/limits.js';
import { yieldEvery } from '../event-loop.js';

export interface CheckedDerivation {
  path: string;
  name: string;
  system: string;
  /** Its requiredSystemFeatures, sorted. */
  requiredFeatures: string[];
  text: string;
  fixedOutput: boolean;
  /** False when the env says allowSubstitutes = false (Nix writes false as ""): always built, never taken from an upstream. */
  allowSubstitutes: boolean;
  /** hashDerivationModulo, unmasked, hex. */
  hashModulo: string;
  outputs: { name: string; path: string; hashAlgo: string; hash: string }[];
  inputDrvs: { path: string; outputs: string[] }[];
  inputSrcs: string[];
}

export interface GivenDerivation {
  path: string;
  text: Uint8Array;
  /** Where in the request it came from, for error messages (e.g. "derivations[2]"). */
  field: string;
}

/** Looks up derivations the coordinator already holds, by path: their hash modulo (hex). */
export type KnownDerivations = (paths: string[]) => Promise<Map<string, string>>;

const MAX_DERIVATIONS = 100_000;

/**
 * Returns the derivations of the closure of `root` (or of several roots, each with the
 * request field that names it) that the request carries, checked, inputs before the
 * derivations that use them. Derivations the coordinator knows are trusted as stored
 * (they were checked when they arrived) and not returned.
 */
export async function checkDerivationClosure(
  root: string | { path: string; field: string }[],
  given: GivenDerivation[],
  known: KnownDerivations,
  limits: DerivationLimits = DEFAULT_INPUT_LIMITS.derivation,
): Promise<CheckedDerivation[]> {
  const roots = typeof root === 'string' ? [{ path: root, field: 'derivation_path' }] : root;
  if (given.length > MAX_DERIVATIONS) throw invalidArgument(`the request carries ${given.length} derivations; at most ${MAX_DERIVATIONS} are accepted`);
  // A large submission is checked in slices, letting the event loop serve others between them.
  const pause = yieldEvery(10);
  const texts = new Map<string, { text: string; field: string }>();
  for (const g of given) {
    checkDrvPath(g.path, `${g.field}.path`);
    if (g.text.length > limits.bytes) {
      throw invalidArgument(`${g.field}: the text of ${g.path} has ${g.text.length} bytes; at most ${limits.bytes} are accepted (limits.derivation.bytes)`);
    }
    await pause();
    const text = decodeText(g.text, g.field, g.path);
    const previous = texts.get(g.path);
    if (previous && previous.text !== text) throw invalidArgument(`${g.field}: ${g.path} is given twice with different texts`);
    texts.set(g.path, { text, field: g.field });
  }
  for (const r of roots) checkDrvPath(r.path, r.field);
  const rootPaths = new Set(roots.map((r) => r.path));

  // Walk the closure from the root: parse what the request carries, ask the database
  // for the rest, level by level so that a deep closure costs few queries.
  const parsed = new Map<string, Derivation>();
  // Stored derivations were checked when they arrived; their hash modulo is all a
  // derivation that uses them needs.
  const memo = new Map<string, Hash>();
  const seen = new Set<string>(rootPaths);
  let frontier = [...seen];
  while (frontier.length > 0) {
    const missing = frontier.filter((p) => !texts.has(p));
    const fromDb = missing.length > 0 ? await known(missing) : new Map<string, string>();
    const next: string[] = [];
    for (const path of frontier) {
      let drv: Derivation;
      const inRequest = texts.get(path);
      if (inRequest) {
        drv = parseOrExplain(inRequest.text, inRequest.field, path, limits);
        parsed.set(path, drv);
        await pause();
      } else {
        const hashModulo = fromDb.get(path);
        if (hashModulo === undefined) {
          throw invalidArgument(
            rootPaths.has(path)
              ? `derivation ${path} is neither in the request's derivations nor known to the coordinator`
              : `input derivation ${path} is neither in the request's derivations nor known to the coordinator; send its text too`,
          );
        }
        memo.set(path, Hash.parseDigest('sha256', hashModulo));
        continue;
      }
      for (const input of drv.inputDrvs.keys()) {
        if (!seen.has(input)) {
          seen.add(input);
          next.push(input);
        }
      }
    }
    frontier = next;
  }

  const resolve = (p: string): Derivation => {
    const d = parsed.get(p);
    if (!d) throw invalidArgument(`input derivation ${p} is unknown`);
    return d;
  };
  const result: CheckedDerivation[] = [];
  for (const path of topologicalOrder(parsed)) {
    const drv = parsed.get(path)!;
    const { text, field } = texts.get(path)!;
    const ownPath = derivationStorePath(text, drv, derivationName(path), storeDirOf(path));
    if (ownPath !== path) {
      throw invalidArgument(`${field}: the text of ${path} hashes to ${ownPath}; it was changed after it was written, or belongs to another path`);
    }
    const problems = verifyDerivation(drv, derivationName(path), storeDirOf(path), resolve, memo);
    if (problems.length > 0) throw invalidArgument(`${field} (${path}): ${problems.join('; ')}`);
    // Inputs come first in this order, so their hashes are in the memo already.
    const own = hashDerivationModulo(drv, resolve, false, memo);
    memo.set(path, own);
    result.push(toChecked(path, text, drv, own.hex));
    await pause();
  }
  return result;
}

function checkDrvPath(path: string, field: string): void {
  try {
    parseStorePath(path);
  } catch (err) {
    throw invalidArgument(`${field}: ${(err as Error).message}`, err);
  }
  if (!path.endsWith('.drv')) throw invalidArgument(`${field}: ${path} is not a derivation (no .drv ending)`);
}

function storeDirOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/'));
}

function decodeText(bytes: Uint8Array, field: string, path: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw invalidArgument(`${field}: the text of ${path} is not valid UTF-8`);
  }
}

function parseOrExplain(text: string, field: string, path: string, limits: DerivationLimits): Derivation {
  try {
    return parseDerivation(text, { maxCounts: limits });
  } catch (err) {
    const message = (err as Error).message;
    // A list over its limit: name the setting that would let it through.
    const over = /more than \d+ (outputs|input derivations|input sources|arguments|environment variables)/.exec(message)?.[1];
    const setting = over ? ` (limits.derivation.${LIMIT_NAMES[over]!})` : '';
    throw invalidArgument(`${field}: ${path} is not a valid derivation: ${message}${setting}`, err);
  }
}

const LIMIT_NAMES: Record<string, keyof DerivationLimits> = {
  outputs: 'outputs',
  'input derivations': 'inputDrvs',
  'input sources': 'inputSrcs',
  arguments: 'args',
  'environment variables': 'env',
};

/** Inputs first; only among the derivations the request carries. */
function topologicalOrder(parsed: Map<string, Derivation>): string[] {
  const order: string[] = [];
  const done = new Set<string>();
  const visit = (start: string) => {
    // Iterative depth-first walk: closures can be thousands of derivations deep.
    const stack: { path: string; inputs: string[] }[] = [{ path: start, inputs: [...parsed.get(start)!.inputDrvs.keys()] }];
    done.add(start);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const next = top.inputs.pop();
      if (next === undefined) {
        order.push(top.path);
        stack.pop();
      } else if (parsed.has(next) && !done.has(next)) {
        done.add(next);
        stack.push({ path: next, inputs: [...parsed.get(next)!.inputDrvs.keys()] });
      }
    }
  };
  for (const path of parsed.keys()) if (!done.has(path)) visit(path);
  return order;
}

function toChecked(path: string, text: string, drv: Derivation, hashModulo: string): CheckedDerivation {
  const outputs = [...drv.outputs.entries()].map(([name, o]) => ({ name, path: o.path, hashAlgo: o.hashAlgo, hash: o.hash }));
  return {
    path,
    name: derivationName(path),
    system: drv.platform,
    requiredFeatures: requiredFeatures(drv),
    text,
    fixedOutput: outputs.length === 1 && outputs[0]!.hash !== '',
    // Nix's getBoolAttr for a derivation without structured attrs: "1" is true.
    allowSubstitutes: !drv.env.has('allowSubstitutes') || drv.env.get('allowSubstitutes') === '1',
    hashModulo,
    outputs,
    inputDrvs: [...drv.inputDrvs.entries()].map(([p, outs]) => ({ path: p, outputs: [...outs] })),
    inputSrcs: [...drv.inputSrcs],
  };
}
