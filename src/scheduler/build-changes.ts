// Operators' changes to builds: cancel, priority, tags. Each change and its event are
// one transaction.
import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { buildAttempts, builds, buildTags, buildWaits, events } from '../db/schema.js';
import { KilnError } from '../errors.js';
import type { RestoreDerivationFiles } from './derivation-files.js';
import { addWaits, settleWaits } from './availability.js';
import { dropPending } from './pending-outputs.js';
import { failDependentsOf, failDoomed, outputPathsOf, reviveDependents } from './dependency-failures.js';
import { getBuild, type BuildRecord } from './build-queries.js';
import { raiseInputs, recomputeBelow } from './priorities.js';
import { validateTag, validateTags, type Tag } from './tags.js';
import { MAX_PRIORITY, MIN_PRIORITY } from '../protocol/priority.js';
import { checkBuildEnded } from './reproducibility.js';

const FINISHED = ['succeeded', 'failed', 'canceled'] as const;


export function validatePriority(priority: number): number {
  if (!Number.isInteger(priority) || priority < MIN_PRIORITY || priority > MAX_PRIORITY) {
    throw new KilnError('invalid_argument', `priority ${priority} is outside ${MIN_PRIORITY}..${MAX_PRIORITY}`);
  }
  return priority;
}

/** Cancels an unfinished build. Canceling a canceled build is harmless; a finished one is refused. */
export async function cancelBuild(db: Database, id: string): Promise<BuildRecord> {
  const build = await getBuild(db, id);
  if (build.state === 'canceled') return build;
  if ((FINISHED as readonly string[]).includes(build.state)) {
    throw new KilnError('failed_precondition', `build ${id} already ${build.state}; only unfinished builds can be canceled`);
  }
  const changed = await db.transaction(async (tx) => {
    const rows = await tx
      .update(builds)
      .set({ state: 'canceled', updatedAt: sql`now()`, endedAt: sql`now()` })
      .where(and(eq(builds.id, id), inArray(builds.state, ['scheduled', 'allocated', 'started'])))
      .returning({ id: builds.id, agentId: builds.agentId });
    if (rows[0]) {
      await tx.insert(events).values({ type: 'build-canceled', buildId: id, agentId: rows[0].agentId, payload: { previousState: build.state } });
      // The attempt under way ends with it (the agent is told to stop; what it reports later is a repeat).
      await tx
        .update(buildAttempts)
        .set({ outcome: 'canceled', endedAt: sql`now()`, message: 'canceled by an operator' })
        .where(and(eq(buildAttempts.buildId, id), isNull(buildAttempts.outcome)));
      // Its inputs lose the priority it gave them, and it waits for nothing any more.
      await recomputeBelow(tx, [id], { excludeRoots: true });
      await tx.delete(buildWaits).where(eq(buildWaits.buildId, id));
      await dropPending(tx, id);
      // Builds waiting for what it would have made may now wait for nothing that will come.
      await failDependentsOf(tx, [id]);
      // A check build canceled: its reproducibility check cannot be completed.
      await checkBuildEnded(tx, id, 'was canceled');
    }
    return rows.length > 0;
  });
  if (!changed) return cancelBuild(db, id); // it finished meanwhile: report truthfully
  return getBuild(db, id);
}

export async function setBuildPriority(db: Database, id: string, priority: number): Promise<BuildRecord> {
  validatePriority(priority);
  const before = await getBuild(db, id);
  await db.transaction(async (tx) => {
    await tx.update(builds).set({ priority, updatedAt: sql`now()` }).where(eq(builds.id, id));
    if (priority >= before.priority) {
      await tx.update(builds).set({ derivedPriority: sql`greatest(${builds.derivedPriority}, ${priority})` }).where(eq(builds.id, id));
      await raiseInputs(tx, [id]);
    } else {
      await recomputeBelow(tx, [id]);
    }
  });
  return getBuild(db, id);
}

/**
 * A failed or canceled build goes back to the queue: a new attempt, no backoff, waiting
 * for whatever of its inputs is not in the cache now (sources garbage collection removed
 * come back when the derivation is submitted again).
 */
export async function retryBuild(db: Database, restoreDerivationFiles: RestoreDerivationFiles, id: string): Promise<BuildRecord> {
  const build = await getBuild(db, id);
  if (build.state !== 'failed' && build.state !== 'canceled') {
    throw new KilnError('failed_precondition', `build ${id} is ${build.state}; only failed or canceled builds can be retried`);
  }
  const retried = await db.transaction(async (tx) => {
    const rows = await tx
      .update(builds)
      .set({
        state: 'scheduled',
        agentId: null,
        leaseUntil: null,
        notBefore: null,
        endedAt: null,
        failureReason: null,
        failedInput: null,
        failedInputBuild: null,
        updatedAt: sql`now()`,
      })
      .where(and(eq(builds.id, id), inArray(builds.state, ['failed', 'canceled'])))
      .returning({ id: builds.id });
    if (rows.length === 0) return false;
    // Its .drv files may have been collected since it finished.
    await restoreDerivationFiles(tx, [build.derivationPath]);
    await addWaits(tx, id);
    await raiseInputs(tx, [id]);
    await tx.insert(events).values({ type: 'build-retried', buildId: id, payload: { previousState: build.state } });
    // What it makes can come again: builds that failed for want of it come back. And if
    // one of its own inputs still will not come, it fails again for that, saying so.
    const revived = await reviveDependents(tx, await outputPathsOf(tx, [build.derivationPath]));
    await raiseInputs(tx, revived.map((r) => r.id));
    await failDoomed(tx, [id]);
    return true;
  });
  if (!retried) return retryBuild(db, restoreDerivationFiles, id); // it changed meanwhile: report truthfully
  await settleWaits(db, [id]);
  return getBuild(db, id);
}

/** Sets (adds or replaces by key) and removes tags in one transaction. */
export async function updateBuildTags(db: Database, id: string, set: Tag[], removeKeys: string[]): Promise<BuildRecord> {
  validateTags(set, `build ${id}`);
  for (const key of removeKeys) validateTag({ key, value: '' }, `build ${id}`);
  const overlap = removeKeys.find((k) => set.some((t) => t.key === k));
  if (overlap) throw new KilnError('invalid_argument', `tag ${overlap} is both set and removed`);
  await getBuild(db, id);
  await db.transaction(async (tx) => {
    if (removeKeys.length > 0) await tx.delete(buildTags).where(and(eq(buildTags.buildId, id), inArray(buildTags.key, removeKeys)));
    for (const tag of set) {
      await tx
        .insert(buildTags)
        .values({ buildId: id, ...tag })
        .onConflictDoUpdate({ target: [buildTags.buildId, buildTags.key], set: { value: tag.value } });
    }
    await tx.update(builds).set({ updatedAt: sql`now()` }).where(eq(builds.id, id));
  });
  return getBuild(db, id);
}
