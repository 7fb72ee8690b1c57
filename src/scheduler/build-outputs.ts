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

/** The build, if it is allocated to the agent and unfinished; else why not, as an error. */
export async function heldBuild(db: Database, agentId: string, buildId: string) {
  if (!isUuid(buildId)) throw new KilnError('invalid_argument', `build id ${JSON.stringify(buildId)} is not a UUID`);
  const [build] = await db.select().from(builds).where(eq(builds.id, buildId));
  if (!build) throw notFound(`no build with id ${buildId}`);
  if (build.agentId !== agentId || (build.state !== 'allocated' && build.state !== 'started')) {
    throw new KilnError('permission_denied', `build ${buildId} is not allocated to agent ${agentId}; it cannot upload for it`);
  }
  return build;
}

export async function outputOfHeldBuild(db: Database, agentId: string, buildId: string, outputName: string): Promise<HeldOutput> {
  const build = await heldBuild(db, agentId, buildId);
  const [output] = await db
    .select({ name: derivationOutputs.name, path: derivationOutputs.path })
    .from(derivationOutputs)
    .where(and(eq(derivationOutputs.derivationPath, build.derivationPath), eq(derivationOutputs.name, outputName)));
  if (!output) throw new KilnError('invalid_argument', `the derivation of build ${buildId} has no output ${JSON.stringify(outputName)}`);
  return { ...output, derivationPath: build.derivationPath };
}
