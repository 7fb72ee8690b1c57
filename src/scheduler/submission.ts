// Submitting a build: every derivation text in the request is parsed and checked (its
// own path, every output path recomputed) before anything is stored; then the
// derivations, the build, its tags and its event are written in one transaction.
import { randomUUID } from 'node:crypto';
import { and, eq, inArray, notExists, notInArray } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { builds, buildTags, buildWaits, derivationInputs, derivationOutputs, derivations, derivationSources, events, storePaths } from '../db/schema.js';
import { invalidArgument, KilnError } from '../errors.js';
import { checkDerivationClosure, type CheckedDerivation } from './derivation-check.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { storeDerivationNar } from '../substitutes/derivation-nar.js';
import { isUuid } from '../uuid.js';
import type { Queryable } from './build-outputs.js';
import { addWaits, settleWaits } from './availability.js';
import { getBuild, type BuildRecord } from './build-queries.js';
import { deriveNewBuildPriority } from './priorities.js';
import { validatePriority } from './build-changes.js';
import { validateTags, type Tag } from './tags.js';

export interface SubmitBuildInput {
  derivationPath: string;
  derivations: { path: string; text: Uint8Array }[];
  buildId?: string;
  priority: number;
  tags: Tag[];
  ignoreIfOutputExists: boolean;
  /** Limits for the agent; 0 means the farm's default. */
  timeoutSeconds?: number;
  maxSilentSeconds?: number;
  /** See NewBuild.submitMissingInputs (the farm's setting). */
  submitMissingInputs?: boolean;
}

export interface SubmitBuildResult {
  build: BuildRecord;
  /** True when an existing build was returned because of ignoreIfOutputExists. */
  existing: boolean;
  /** Every build written: this one and those submitted for its missing inputs. */
  created: string[];
}

/** PostgreSQL's unique_violation, raised when two submissions race for one build id. */
const UNIQUE_VIOLATION = '23505';

export async function submitBuild(db: Database, storage: NarStorage, input: SubmitBuildInput): Promise<SubmitBuildResult> {
  if (input.buildId !== undefined && !isUuid(input.buildId)) {
    throw invalidArgument(`build_id ${JSON.stringify(input.buildId)} is not a UUID`);
  }
  validatePriority(input.priority);
  validateTags(input.tags, 'build');
  validateLimit(input.timeoutSeconds, 'timeout_seconds');
  validateLimit(input.maxSilentSeconds, 'max_silent_seconds');
  if (!input.derivationPath) throw invalidArgument('derivation_path is empty: name the .drv to build');

  const known = new Set<string>();
  const checked = await checkDerivationClosure(
    input.derivationPath,
    input.derivations.map((d, i) => ({ path: d.path, text: d.text, field: `derivations[${i}]` })),
    async (paths) => {
      const rows = await db
        .select({ path: derivations.path, hashModulo: derivations.hashModulo })
        .from(derivations)
        .where(inArray(derivations.path, paths));
      for (const r of rows) known.add(r.path);
      return new Map(rows.map((r) => [r.path, r.hashModulo]));
    },
  );
  const target = input.derivationPath;
  const id = input.buildId ?? randomUUID();
  // The .drv files' NARs are written before the transaction; content-addressed, so a
  // failed submission leaves at most an unreferenced file for garbage collection.
  const fresh = checked.filter((c) => !known.has(c.path));
  const drvPaths = await Promise.all(
    fresh.map((c) => storeDerivationNar(storage, { path: c.path, text: c.text, references: [...c.inputSrcs, ...c.inputDrvs.map((i) => i.path)] })),
  );

  try {
    const outcome = await db.transaction(async (tx): Promise<{ existingId?: string; created: string[] }> => {
      if (input.ignoreIfOutputExists) {
        const outputPaths =
          checked.find((c) => c.path === target)?.outputs.map((o) => o.path) ??
          (await tx.select({ path: derivationOutputs.path }).from(derivationOutputs).where(eq(derivationOutputs.derivationPath, target))).map((o) => o.path);
        const [match] = await tx
          .select({ id: builds.id })
          .from(builds)
          .innerJoin(derivationOutputs, eq(derivationOutputs.derivationPath, builds.derivationPath))
          .where(and(inArray(derivationOutputs.path, outputPaths), notInArray(builds.state, ['failed', 'canceled'])))
          .limit(1);
        if (match) return { existingId: match.id, created: [] };
      }
      if (input.buildId) {
        const [clash] = await tx.select({ id: builds.id }).from(builds).where(eq(builds.id, id));
        if (clash) throw new KilnError('already_exists', `a build with id ${id} exists already`);
      }
      await storeDerivations(tx as unknown as Database, fresh);
      if (drvPaths.length > 0) await tx.insert(storePaths).values(drvPaths).onConflictDoNothing();
      return { created: await insertBuild(tx, { ...input, id }) };
    });
    // An input that arrived while this transaction ran is released now (see availability.ts).
    await settleWaits(db, outcome.created);
    const existing = outcome.existingId !== undefined;
    return { build: await getBuild(db, outcome.existingId ?? id), existing, created: outcome.created };
  } catch (err) {
    if ((err as { code?: string }).code === UNIQUE_VIOLATION && input.buildId) {
      throw new KilnError('already_exists', `a build with id ${id} exists already`);
    }
    throw err;
  }
}

/** Stores derivations not known yet, inputs before the derivations that use them. */
async function storeDerivations(db: Database, list: CheckedDerivation[]): Promise<void> {
  for (const d of list) {
    await db
      .insert(derivations)
      .values({ path: d.path, name: d.name, system: d.system, text: d.text, fixedOutput: d.fixedOutput, hashModulo: d.hashModulo })
      .onConflictDoNothing();
    await db
      .insert(derivationOutputs)
      .values(d.outputs.map((o) => ({ derivationPath: d.path, ...o })))
      .onConflictDoNothing();
    if (d.inputSrcs.length > 0) {
      await db.insert(derivationSources).values(d.inputSrcs.map((path) => ({ derivationPath: d.path, path }))).onConflictDoNothing();
    }
    const edges = d.inputDrvs.flatMap((i) => i.outputs.map((outputName) => ({ derivationPath: d.path, inputPath: i.path, outputName })));
    if (edges.length > 0) await db.insert(derivationInputs).values(edges).onConflictDoNothing();
  }
}

export interface NewBuild {
  id: string;
  derivationPath: string;
  priority: number;
  tags: Tag[];
  timeoutSeconds?: number;
  maxSilentSeconds?: number;
  /** Why the build exists when no one submitted it (e.g. a missing input of another). */
  reason?: string;
  /**
   * Also submit builds for the inputs it waits on that no build will make (none queued,
   * running or failed), and theirs: what a farm that builds whole closures wants, and
   * the default; off for a farm that only builds what it is asked to.
   */
  submitMissingInputs?: boolean;
}

/**
 * Writes a build of a stored derivation: the row, its tags, what it waits for, its
 * derived priority (and its inputs'), and its build-submitted event; with
 * submitMissingInputs, builds for its inputs that nobody builds. Returns the ids of every
 * build written. The caller settles their waits after commit (settleWaits).
 */
export async function insertBuild(tx: Queryable, build: NewBuild): Promise<string[]> {
  const [drv] = await tx.select({ system: derivations.system }).from(derivations).where(eq(derivations.path, build.derivationPath));
  if (!drv) throw new KilnError('not_found', `derivation ${build.derivationPath} is not stored`);
  await tx.insert(builds).values({
    id: build.id,
    derivationPath: build.derivationPath,
    system: drv.system,
    priority: build.priority,
    derivedPriority: build.priority,
    timeoutSeconds: build.timeoutSeconds ?? 0,
    maxSilentSeconds: build.maxSilentSeconds ?? 0,
  });
  if (build.tags.length > 0) await tx.insert(buildTags).values(build.tags.map((t) => ({ buildId: build.id, ...t })));
  const waiting = await addWaits(tx, build.id, build.derivationPath);
  await deriveNewBuildPriority(tx, build.id);
  await tx.insert(events).values({
    type: 'build-submitted',
    buildId: build.id,
    payload: { derivationPath: build.derivationPath, priority: build.priority, ...(build.reason ? { reason: build.reason } : {}) },
  });
  const submitted = [build.id];
  if (waiting > 0 && build.submitMissingInputs) {
    const paths = (await tx.select({ path: buildWaits.path }).from(buildWaits).where(eq(buildWaits.buildId, build.id))).map((w) => w.path);
    submitted.push(...(await submitBuildsForMissing(tx, build, paths)));
  }
  return submitted;
}

/**
 * Submits a build for each derivation that makes one of `paths` and has no build that
 * will make it (none queued, running or failed: a failed one waits for an operator),
 * with the waiter's tags, recursively. Returns the new builds' ids.
 */
export async function submitBuildsForMissing(
  tx: Queryable,
  waiter: { id: string; derivationPath: string },
  paths: string[],
): Promise<string[]> {
  if (paths.length === 0) return [];
  const producers = await tx
    .selectDistinct({ derivationPath: derivationOutputs.derivationPath })
    .from(derivationOutputs)
    .where(
      and(
        inArray(derivationOutputs.path, paths),
        notExists(
          tx
            .select({ id: builds.id })
            .from(builds)
            .where(and(eq(builds.derivationPath, derivationOutputs.derivationPath), inArray(builds.state, ['scheduled', 'allocated', 'started', 'failed']))),
        ),
      ),
    );
  if (producers.length === 0) return [];
  const tags = await tx.select({ key: buildTags.key, value: buildTags.value }).from(buildTags).where(eq(buildTags.buildId, waiter.id));
  const submitted: string[] = [];
  for (const { derivationPath } of producers) {
    submitted.push(
      ...(await insertBuild(tx, {
        id: randomUUID(),
        derivationPath,
        priority: 0,
        tags,
        reason: `missing input of build ${waiter.id} (${waiter.derivationPath})`,
        submitMissingInputs: true,
      })),
    );
  }
  return submitted;
}

/** A build's time limit: whole seconds, 0 for the farm's default, at most 30 days. */
function validateLimit(seconds: number | undefined, field: string): void {
  if (seconds === undefined) return;
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 30 * 24 * 3600) {
    throw invalidArgument(`${field} ${seconds} must be whole seconds between 0 (the farm's default) and 30 days`);
  }
}
