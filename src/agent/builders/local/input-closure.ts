// Everything a derivation's build reads: the outputs it names of its input derivations
// (their .drv files fetched to learn the paths), its input sources, and all that those
// refer to, transitively. Each is made valid in the local store from the cache; what the
// cache lacks is reported as missing: input derivations for their outputs, paths for
// sources and deeper references.
import { readFile } from 'node:fs/promises';
import { parseDerivation, type Derivation } from '../../../store/derivation.js';
import type { LocalStore } from './local-store.js';
import type { Substituter } from './substituter.js';

export type InputClosure = { kind: 'ready'; paths: Set<string> } | { kind: 'missing'; missing: string[] };

interface Wanted {
  path: string;
  /** What to report if the path cannot be had: its derivation, or the path itself. */
  blame: string;
}

export async function realiseInputs(drv: Derivation, store: LocalStore, substituter: Substituter, signal: AbortSignal): Promise<InputClosure> {
  const missing = new Set<string>();
  const wanted: Wanted[] = drv.inputSrcs.map((path) => ({ path, blame: path }));
  await settleAll(
    [...drv.inputDrvs].map(async ([drvPath, outputNames]) => {
      if (!(await substituter.ensure(drvPath, signal))) {
        missing.add(drvPath);
        return;
      }
      const input = parseDerivation(await readFile(store.diskPath(drvPath)));
      for (const name of outputNames) {
        const output = input.outputs.get(name);
        if (!output?.path) throw new Error(`input derivation ${drvPath} has no output ${JSON.stringify(name)} with a known path`);
        wanted.push({ path: output.path, blame: drvPath });
      }
    }),
  );

  const closure = new Set<string>();
  const visit = async (path: string, blame: string): Promise<void> => {
    if (closure.has(path)) return;
    closure.add(path);
    const info = await substituter.ensure(path, signal);
    if (!info) {
      missing.add(blame);
      return;
    }
    await settleAll(info.references.filter((r) => r !== path).map((r) => visit(r, r)));
  };
  await settleAll(wanted.map((w) => visit(w.path, w.blame)));
  if (missing.size > 0) return { kind: 'missing', missing: [...missing].sort() };
  return { kind: 'ready', paths: closure };
}

/** Waits for every promise (so none is left running unobserved), then throws the first error. */
async function settleAll(promises: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
