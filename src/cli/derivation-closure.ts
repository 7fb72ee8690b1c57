// Reads a .drv and, recursively, its input derivations from the local store, so that a
// submission carries every text the coordinator might lack. A .drv this machine does not
// have is submitted by path alone: the coordinator gets it from an upstream.
import { access, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseDerivation } from '../store/derivation.js';
import { UsageError } from './usage-error.js';

export interface DerivationFile {
  path: string;
  text: Uint8Array;
}

/** The root first, then its inputs (each once), read breadth-first; none when the root is not here. */
export async function readDerivationClosure(drvPath: string): Promise<DerivationFile[]> {
  const root = resolve(drvPath);
  if (!root.endsWith('.drv')) throw new UsageError(`${drvPath} is not a derivation (.drv) file`);
  if (!(await exists(root))) return [];
  const result: DerivationFile[] = [];
  const seen = new Set([root]);
  let frontier = [root];
  while (frontier.length > 0) {
    const texts = await Promise.all(frontier.map(readDrv));
    const next: string[] = [];
    frontier.forEach((path, i) => {
      const text = texts[i]!;
      result.push({ path, text });
      let inputs: Iterable<string>;
      try {
        inputs = parseDerivation(Buffer.from(text).toString('utf8')).inputDrvs.keys();
      } catch (err) {
        throw new Error(`${path} is not a valid derivation: ${(err as Error).message}`, { cause: err });
      }
      for (const input of inputs) {
        if (!seen.has(input)) {
          seen.add(input);
          next.push(input);
        }
      }
    });
    frontier = next;
  }
  return result;
}

async function readDrv(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `derivation ${path} is not in the local store` : `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
