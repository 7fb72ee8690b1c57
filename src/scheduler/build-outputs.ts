// What an agent may upload: outputs and logs only of builds allocated to it and not
// finished yet.
import { and, eq } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { builds, derivationOutputs } from '../db/schema.js';
import { KilnError, notFound } from '../errors.js';
import { isUuid } from '../uuid.js';

export interface HeldOutput {
  name: string;
  path: string;
  derivationPath: string;
}

/** A database or a transaction in progress. */
export type Queryable = Database | Parameters<Parameters<Database['transaction']>[0]>[0];

/**
 * The build, if it is allocated to the agent (and, with `unfinished`, not finished yet);
 * else why not, as an error. `lock` takes its row lock inside a transaction.
 */
export async function buildOfAgent(
  db: Queryable,
  agentId: string,
  buildId: string,
  opts: { lock?: boolean; unfinished?: boolean; refusal?: string } = {},
) {
  if (!isUuid(buildId)) throw new KilnError('invalid_argument', `build id ${JSON.stringify(buildId)} is not a UUID`);
  const query = db.select().from(builds).where(eq(builds.id, buildId));
  const [build] = opts.lock ? await query.for('update') : await query;
  return checkOfAgent(build, agentId, buildId, opts);
}

/** The checks of buildOfAgent on a build row read (undefined: there is none). */
function checkOfAgent<B extends { agentId: string | null; state: string }>(
  build: B | undefined,
  agentId: string,
  buildId: string,
  opts: { unfinished?: boolean; refusal?: string },
): B {
  if (!build) throw notFound(`no build with id ${buildId}`);
  const finished = build.state !== 'allocated' && build.state !== 'started';
  if (build.agentId !== agentId || (opts.unfinished && finished)) {
    throw new KilnError('permission_denied', `build ${buildId} is not allocated to agent ${agentId}${opts.refusal ?? ''}`);
  }
  return build;
}

const UPLOAD_REFUSAL = { unfinished: true, refusal: '; it cannot upload for it' };

/** The build, if the agent may upload for it: allocated to it and unfinished. */
export function heldBuild(db: Database, agentId: string, buildId: string) {
  return buildOfAgent(db, agentId, buildId, UPLOAD_REFUSAL);
}

/** The output of a build the agent may upload for, read with the build in one query (every upload asks). */
export async function outputOfHeldBuild(db: Database, agentId: string, buildId: string, outputName: string): Promise<HeldOutput> {
  if (!isUuid(buildId)) throw new KilnError('invalid_argument', `build id ${JSON.stringify(buildId)} is not a UUID`);
  const [row] = await db
    .select({ agentId: builds.agentId, state: builds.state, derivationPath: builds.derivationPath, name: derivationOutputs.name, path: derivationOutputs.path })
    .from(builds)
    .leftJoin(derivationOutputs, and(eq(derivationOutputs.derivationPath, builds.derivationPath), eq(derivationOutputs.name, outputName)))
    .where(eq(builds.id, buildId));
  const build = checkOfAgent(row, agentId, buildId, UPLOAD_REFUSAL);
  if (build.name === null || build.path === null) {
    throw new KilnError('invalid_argument', `the derivation of build ${buildId} has no output ${JSON.stringify(outputName)}`);
  }
  return { name: build.name, path: build.path, derivationPath: build.derivationPath };
}
