// Submitting a build: every derivation text in the request is parsed and checked (its
// own path, every output path recomputed) before anything is stored; then the
// derivations, the build, its tags and its event are written in one transaction.
import { randomUUID } from 'node:crypto';
import { and, eq, inArray, notInArray } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { builds, buildTags, derivationInputs, derivationOutputs, derivations, events, storePaths } from '../db/schema.js';
import { invalidArgument, KilnError } from '../errors.js';
import { checkDerivationClosure, type CheckedDerivation } from './derivation-check.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { storeDerivationNar } from '../substitutes/derivation-nar.js';
import { isUuid } from '../uuid.js';
import { getBuild, type BuildRecord } from './build-queries.js';
import { validatePriority } from './build-changes.js';
import { validateTags, type Tag } from './tags.js';

export interface SubmitBuildInput {
  derivationPath: string;
  derivations: { path: string; text: Uint8Array }[];
  buildId?: string;
  priority: number;
  tags: Tag[];
  ignoreIfOutputExists: boolean;
}

export interface SubmitBuildResult {
  build: BuildRecord;
  /** True when an existing build was returned because of ignoreIfOutputExists. */
  existing: boolean;
}

/** PostgreSQL's unique_violation, raised when two submissions race for one build id. */
const UNIQUE_VIOLATION = '23505';

export async function submitBuild(db: Database, storage: NarStorage, input: SubmitBuildInput): Promise<SubmitBuildResult> {
  if (input.buildId !== undefined && !isUuid(input.buildId)) {
    throw invalidArgument(`build_id ${JSON.stringify(input.buildId)} is not a UUID`);
  }
  validatePriority(input.priority);
  validateTags(input.tags, 'build');
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
    const existingId = await db.transaction(async (tx) => {
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
        if (match) return match.id;
      }
      if (input.buildId) {
        const [clash] = await tx.select({ id: builds.id }).from(builds).where(eq(builds.id, id));
        if (clash) throw new KilnError('already_exists', `a build with id ${id} exists already`);
      }
      await storeDerivations(tx as unknown as Database, fresh);
      if (drvPaths.length > 0) await tx.insert(storePaths).values(drvPaths).onConflictDoNothing();
      await tx.insert(builds).values({ id, derivationPath: target, priority: input.priority });
      if (input.tags.length > 0) await tx.insert(buildTags).values(input.tags.map((t) => ({ buildId: id, ...t })));
      await tx.insert(events).values({ type: 'build-submitted', buildId: id, payload: { derivationPath: target, priority: input.priority } });
      return undefined;
    });
    return { build: await getBuild(db, existingId ?? id), existing: existingId !== undefined };
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
    const edges = d.inputDrvs.flatMap((i) => i.outputs.map((outputName) => ({ derivationPath: d.path, inputPath: i.path, outputName })));
    if (edges.length > 0) await db.insert(derivationInputs).values(edges).onConflictDoNothing();
  }
}
