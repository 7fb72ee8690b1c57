// Input sources: the store paths a derivation names in inputSrcs (a builder script, a
// module tree), which no build produces; whoever submits the derivation uploads them.
// The cache takes a source only when a submitted derivation needs it, so that a path
// nobody needs does not fill it.
import { eq, inArray } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { derivations, storePaths } from '../db/schema.js';
import { invalidArgument, KilnError } from '../errors.js';
import { parseDerivation } from '../store/derivation.js';
import { parseStorePath } from '../store/store-path.js';

const MAX_PATHS = 100_000;
/** Paths per lookup: PostgreSQL takes at most 65,535 parameters in one statement. */
const BATCH = 10_000;

/** Of `paths`, those the cache does not hold, in the order given. */
export async function missingPaths(db: Database, paths: string[]): Promise<string[]> {
  if (paths.length > MAX_PATHS) throw invalidArgument(`${paths.length} paths asked about; at most ${MAX_PATHS} at once`);
  paths.forEach((p, i) => checkStorePath(p, `paths[${i}]`));
  const held = new Set<string>();
  for (let i = 0; i < paths.length; i += BATCH) {
    const rows = await db.select({ path: storePaths.path }).from(storePaths).where(inArray(storePaths.path, paths.slice(i, i + BATCH)));
    for (const r of rows) held.add(r.path);
  }
  return paths.filter((p) => !held.has(p));
}

/**
 * Checks that the submitted derivation `derivationPath` needs `sourcePath`: it names it
 * among its input sources, or names `via[0]`, the start of the chain of sources that
 * refers to it (taken on trust: those arrive after it, their references unknown yet).
 * Throws, saying what is wrong, when it does not.
 */
export async function checkSourceNeeded(db: Database, derivationPath: string, sourcePath: string, via: readonly string[]): Promise<void> {
  checkStorePath(sourcePath, 'store_path');
  checkStorePath(derivationPath, 'derivation_path');
  via.forEach((p, i) => checkStorePath(p, `via[${i}]`));
  const [drv] = await db.select({ text: derivations.text }).from(derivations).where(eq(derivations.path, derivationPath));
  if (!drv) {
    throw new KilnError('failed_precondition', `derivation ${derivationPath} is not known to the coordinator: submit it before uploading its sources`);
  }
  const named = via[0] ?? sourcePath;
  if (parseDerivation(drv.text).inputSrcs.includes(named)) return;
  throw new KilnError(
    'failed_precondition',
    `${named} is not an input source of ${derivationPath}; only sources a submitted derivation needs are taken`,
  );
}

/**
 * Checks that every path a source refers to is in the cache already, so that the cache
 * never serves a path whose references a client cannot fetch (Nix's own rule for a
 * store), and a build whose .drv's references are all there has its whole closure.
 */
export async function checkReferencesHeld(db: Database, sourcePath: string, references: readonly string[]): Promise<void> {
  references.forEach((p, i) => checkStorePath(p, `references[${i}]`));
  const missing = await missingPaths(db, references.filter((r) => r !== sourcePath));
  if (missing.length > 0) {
    throw new KilnError('failed_precondition', `${sourcePath} refers to paths the cache lacks: upload them first: ${missing.join(', ')}`);
  }
}

function checkStorePath(path: string, field: string): void {
  try {
    parseStorePath(path);
  } catch (err) {
    throw invalidArgument(`${field}: ${(err as Error).message}`, err);
  }
}
