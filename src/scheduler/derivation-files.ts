// What builds need of the cache when they are submitted or retried: the .drv files of
// their derivations' closures present in it, so agents can fetch them. Putting them there
// is the cache's job (substitutes/derivation-nar.ts); the scheduler is handed this
// function and knows no storage.
import type { Database } from '../db/connection.js';

type Executor = Pick<Database, 'execute' | 'insert'>;

/**
 * Within the submitting (or retrying) transaction: puts into the cache the .drv files of
 * the closures of the stored derivations `roots` that it lacks; returns how many.
 */
export type RestoreDerivationFiles = (tx: Executor, roots: string[]) => Promise<number>;
