// Operators' changes to builds: cancel, priority, tags. Each change and its event are
// one transaction.
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { builds, buildTags, events } from '../db/schema.js';
import { KilnError } from '../errors.js';
import { getBuild, type BuildRecord } from './build-queries.js';
import { validateTag, validateTags, type Tag } from './tags.js';

const FINISHED = ['succeeded', 'failed', 'canceled'] as const;

export const MIN_PRIORITY = -1_000_000;
export const MAX_PRIORITY = 1_000_000;

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
    }
    return rows.length > 0;
  });
  if (!changed) return cancelBuild(db, id); // it finished meanwhile: report truthfully
  return getBuild(db, id);
}

export async function setBuildPriority(db: Database, id: string, priority: number): Promise<BuildRecord> {
  validatePriority(priority);
  await getBuild(db, id);
  await db.update(builds).set({ priority, updatedAt: sql`now()` }).where(eq(builds.id, id));
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
