// Submission by path: a SubmitBuild that names a .drv without carrying its text gets the
// texts kiln lacks from the upstreams used for derivations, before the submission's own
// checks (which then treat them as if the client had sent them).
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { derivations } from '../db/schema.js';
import { KilnError } from '../errors.js';
import { DerivationFetchError, fetchDerivationClosure } from '../cache/upstreams/derivation-fetch.js';
import type { Upstream } from '../cache/upstreams/upstream-list.js';
import type { SubmitBuildInput } from '../scheduler/submission.js';

export type DerivationsByPath = (input: SubmitBuildInput) => Promise<SubmitBuildInput>;

export function derivationsByPath(db: Database, upstreams: readonly Upstream[]): DerivationsByPath {
  const isKnown = async (paths: string[]) =>
    new Set((await db.select({ path: derivations.path }).from(derivations).where(sql`${derivations.path} = any(${sql.param(paths)}::text[])`)).map((r) => r.path));
  return async (input) => {
    if (!input.derivationPath.endsWith('.drv') || input.derivations.some((d) => d.path === input.derivationPath)) return input;
    try {
      const fetched = await fetchDerivationClosure(upstreams, input.derivationPath, isKnown, AbortSignal.timeout(120_000));
      return { ...input, derivations: [...input.derivations, ...fetched] };
    } catch (err) {
      if (err instanceof DerivationFetchError) throw new KilnError('failed_precondition', err.message);
      throw err;
    }
  };
}
