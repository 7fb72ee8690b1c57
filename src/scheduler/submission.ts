// Submitting builds, one or many at once: every derivation text in the request is
// parsed and checked (its own path, every output path recomputed) before anything is
// stored; then the derivations and the builds (new-builds.ts) are written in one
// transaction.
import { randomUUID } from 'node:crypto';
import { and, eq, exists, inArray, isNull, ne, notExists, notInArray, or, sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { builds, derivationOutputs, derivations, fodChecks, storePaths } from '../db/schema.js';
import { invalidArgument, KilnError } from '../errors.js';
import { checkDerivationClosure, type CheckedDerivation } from './derivation-check.js';
import type { RestoreDerivationFiles } from './derivation-files.js';
import { isUuid } from '../uuid.js';
import { settleWaits } from './availability.js';
import { getBuilds, type BuildRecord } from './build-queries.js';
import { validatePriority } from './build-changes.js';
import { insertBuilds } from './new-builds.js';
import { succeedCached } from './cached-builds.js';
import { validateTags, type Tag } from './tags.js';
import { requestCheck, validateCheckRequest, type CheckRequest } from './reproducibility.js';
import { DEFAULT_INPUT_LIMITS, type InputLimits } from '../protocol/limits.js';

export interface SubmitBuildInput {
  derivationPath: string;
  derivations: { path: string; text: Uint8Array }[];
  buildId?: string;
  priority: number;
  tags: Tag[];
  ignoreIfOutputExists: boolean;
  /**
   * Also no build when every output is available from a trusted upstream (as the
   * submission's `upstreamHas` answers); implies ignoreIfOutputExists.
   */
  ignoreIfUpstreamHasOutputs?: boolean;
  /** Limits for the agent; 0 means the farm's default. */
  timeoutSeconds?: number;
  maxSilentSeconds?: number;
  /** See NewBuild.submitMissingInputs in new-builds.ts (the farm's setting). */
  submitMissingInputs?: boolean;
  /** Also build it on other agents and compare the outputs (reproducibility.ts); agents 0: no check. */
  checkReproducible?: CheckRequest;
}

export interface SubmitBuildResult {
  /** Undefined only when availableUpstream is true. */
  build: BuildRecord | undefined;
  /** True when an existing build was returned because of ignoreIfOutputExists. */
  existing: boolean;
  /** True when no build was made because a trusted upstream has every output. */
  availableUpstream: boolean;
  /** Every build written: this one and those submitted for its missing inputs. */
  created: string[];
}

/** PostgreSQL's unique_violation, raised when two submissions race for one build id. */
const UNIQUE_VIOLATION = '23505';

/** How many builds one SubmitBuilds call may carry. */
export const MAX_BATCH = 10_000;

/**
 * Which of `paths` a trusted upstream has (a verified narinfo); one that cannot tell
 * counts as not having it. Asked before the submission's transaction, never inside it.
 */
export type UpstreamHas = (paths: string[]) => Promise<ReadonlySet<string>>;

export async function submitBuild(
  db: Database,
  restoreDerivationFiles: RestoreDerivationFiles,
  input: SubmitBuildInput,
  limits: InputLimits = DEFAULT_INPUT_LIMITS,
  upstreamHas?: UpstreamHas,
): Promise<SubmitBuildResult> {
  const { builds: [result], created } = await submitBuilds(db, restoreDerivationFiles, [input], limits, upstreamHas);
  return { ...result!, created };
}

export interface SubmitBuildsResult {
  /** One per build asked for, in order. */
  builds: Omit<SubmitBuildResult, 'created'>[];
  /** Every build written: those asked for and those submitted for their missing inputs. */
  created: string[];
}

/**
 * Submits several builds in one transaction: all are made, or none (the error names the
 * one at fault as builds[i]). A build may use derivations that others in the same call
 * carry, and may wait on builds made by the same call. `restoreDerivationFiles` puts
 * their .drv files into the cache. `upstreamHas` answers for the builds asked with
 * ignoreIfUpstreamHasOutputs (without it, no upstream has anything).
 */
export async function submitBuilds(
  db: Database,
  restoreDerivationFiles: RestoreDerivationFiles,
  inputs: SubmitBuildInput[],
  limits: InputLimits = DEFAULT_INPUT_LIMITS,
  upstreamHas?: UpstreamHas,
): Promise<SubmitBuildsResult> {
  if (inputs.length === 0) return { builds: [], created: [] };
  if (inputs.length > MAX_BATCH) throw invalidArgument(`${inputs.length} builds in one call; at most ${MAX_BATCH} are accepted`);
  // A single submission's errors name its fields as they are; a batch's say which build.
  const at = (i: number) => (inputs.length === 1 ? '' : `builds[${i}].`);
  inputs.forEach((input, i) => validateInput(input, at(i), limits.tagsPerBuild));
  const ids = inputs.map((input) => input.buildId ?? randomUUID());
  const given = inputs.map((input) => input.buildId).filter((id): id is string => id !== undefined);
  const seenIds = new Set<string>();
  const twice = given.find((id) => seenIds.size === seenIds.add(id).size);
  if (twice) throw invalidArgument(`build id ${twice} is given to two builds of the call`);

  const known = new Set<string>();
  const checked = await checkDerivationClosure(
    inputs.map((input, i) => ({ path: input.derivationPath, field: `${at(i)}derivation_path` })),
    inputs.flatMap((input, i) => input.derivations.map((d, j) => ({ path: d.path, text: d.text, field: `${at(i)}derivations[${j}]` }))),
    async (paths) => {
      const rows = await db
        .select({ path: derivations.path, hashModulo: derivations.hashModulo })
        .from(derivations)
        .where(sql`${derivations.path} = any(${sql.param(paths)}::text[])`);
      for (const r of rows) known.add(r.path);
      return new Map(rows.map((r) => [r.path, r.hashModulo]));
    },
    limits.derivation,
  );
  const fresh = checked.filter((c) => !known.has(c.path));
  const outputsOf = await outputPaths(db, inputs, checked);
  // HTTP to the upstreams happens here, outside the transaction, so that a slow upstream
  // holds no locks.
  const askUpstream = inputs.flatMap((input) => (input.ignoreIfUpstreamHasOutputs ? outputsOf.get(input.derivationPath) ?? [] : []));
  const onUpstream = askUpstream.length > 0 && upstreamHas ? await upstreamHas([...new Set(askUpstream)]) : new Set<string>();

  try {
    const outcome = await db.transaction(async (tx) => {
      const clash = given.length > 0 ? await tx.select({ id: builds.id }).from(builds).where(sql`${builds.id} = any(${sql.param(given)}::uuid[])`).limit(1) : [];
      if (clash[0]) throw new KilnError('already_exists', `a build with id ${clash[0].id} exists already`);
      await storeDerivations(tx as unknown as Database, fresh);
      // Content-addressed files: a failed submission leaves at most unreferenced ones for gc.
      await restoreDerivationFiles(tx, inputs.map((input) => input.derivationPath));
      const { existing, upstream } = await existingBuilds(tx as unknown as Database, inputs, ids, outputsOf, onUpstream);
      const created = await insertBuilds(
        tx,
        inputs.flatMap((input, i) => (existing.has(i) || upstream.has(i) ? [] : [{ ...input, id: ids[i]! }])),
      );
      // Asked without ignoreIfOutputExists, a build whose outputs the cache holds has
      // nothing to make: it succeeds now rather than go to an agent.
      await succeedCached(tx, created);
      // A check asked with an existing build is that build's check (begun now if it succeeded).
      for (const [i, input] of inputs.entries()) {
        if (!input.checkReproducible?.agents || upstream.has(i)) continue;
        created.push(...(await requestCheck(tx, existing.get(i) ?? ids[i]!, input.checkReproducible)).submitted);
      }
      return { existing, upstream, created };
    });
    // An input that arrived while this transaction ran is released now (see availability.ts).
    await settleWaits(db, outcome.created);
    const resultIds = inputs.map((_, i) => outcome.existing.get(i) ?? ids[i]!);
    const records = await getBuilds(db, resultIds.filter((_, i) => !outcome.upstream.has(i)));
    return {
      builds: inputs.map((_, i) =>
        outcome.upstream.has(i)
          ? { build: undefined, existing: false, availableUpstream: true }
          : { build: records.get(resultIds[i]!)!, existing: outcome.existing.has(i), availableUpstream: false },
      ),
      created: outcome.created,
    };
  } catch (err) {
    if ((err as { code?: string }).code === UNIQUE_VIOLATION && given.length > 0) {
      throw new KilnError('already_exists', `a build with one of the ids ${given.join(', ')} exists already`);
    }
    throw err;
  }
}

function validateInput(input: SubmitBuildInput, at: string, maxTags: number): void {
  if (input.buildId !== undefined && !isUuid(input.buildId)) {
    throw invalidArgument(`${at}build_id ${JSON.stringify(input.buildId)} is not a UUID`);
  }
  try {
    validatePriority(input.priority);
    validateTags(input.tags, 'build', maxTags);
  } catch (err) {
    if (at && err instanceof KilnError) throw new KilnError(err.kind, `${at.slice(0, -1)}: ${err.message}`);
    throw err;
  }
  if (input.checkReproducible?.agents) validateCheckRequest(input.checkReproducible, `${at}check_reproducible`);
  else if (input.checkReproducible?.byTag) throw invalidArgument(`${at}check_reproducible_by needs check_reproducible (how many agents in all)`);
  validateLimit(input.timeoutSeconds, `${at}timeout_seconds`);
  validateLimit(input.maxSilentSeconds, `${at}max_silent_seconds`);
  if (!input.derivationPath) throw invalidArgument(`${at}derivation_path is empty: name the .drv to build`);
}

const asksExisting = (input: SubmitBuildInput) => input.ignoreIfOutputExists || input.ignoreIfUpstreamHasOutputs === true;

/** The output paths of the derivations of the builds asked with ignoreIfOutputExists, by derivation. */
async function outputPaths(db: Database, inputs: SubmitBuildInput[], checked: CheckedDerivation[]): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  if (!inputs.some(asksExisting)) return found;
  for (const input of inputs) {
    const path = input.derivationPath;
    if (found.has(path)) continue;
    found.set(
      path,
      checked.find((c) => c.path === path)?.outputs.map((o) => o.path) ??
        (await db.select({ path: derivationOutputs.path }).from(derivationOutputs).where(eq(derivationOutputs.derivationPath, path))).map((o) => o.path),
    );
  }
  return found;
}

/**
 * For the builds asked with ignoreIfOutputExists: the build that will produce (or
 * produced) an output of theirs, here or made earlier in the same call, by index; and,
 * of those asked with ignoreIfUpstreamHasOutputs that have no such build, those whose
 * every output is `onUpstream`.
 */
async function existingBuilds(
  db: Database,
  inputs: SubmitBuildInput[],
  ids: string[],
  outputsOf: Map<string, string[]>,
  onUpstream: ReadonlySet<string>,
): Promise<{ existing: Map<number, string>; upstream: Set<number> }> {
  const found = new Map<number, string>();
  const upstream = new Set<number>();
  if (!inputs.some(asksExisting)) return { existing: found, upstream };
  const toMake: { id: string; outputs: string[] }[] = [];
  for (const [i, input] of inputs.entries()) {
    const outputs = outputsOf.get(input.derivationPath) ?? [];
    if (asksExisting(input)) {
      const [match] = await db
        .select({ id: builds.id })
        .from(builds)
        .innerJoin(derivationOutputs, eq(derivationOutputs.derivationPath, builds.derivationPath))
        // A succeeded build counts only while the cache holds what it made: once gc took
        // an output, asking again builds it again.
        .where(
          and(
            inArray(derivationOutputs.path, outputs),
            notInArray(builds.state, ['failed', 'canceled']),
            // A fixed-output re-check (qa/fod-checks.ts) is no build of the outputs to wait on.
            notExists(db.select({ one: sql`1` }).from(fodChecks).where(eq(fodChecks.buildId, builds.id))),
            isNull(builds.checkOf),
            or(ne(builds.state, 'succeeded'), exists(db.select({ one: sql`1` }).from(storePaths).where(eq(storePaths.path, derivationOutputs.path)))),
          ),
        )
        .limit(1);
      const id = match?.id ?? toMake.find((m) => m.outputs.some((o) => outputs.includes(o)))?.id;
      if (id) {
        found.set(i, id);
        continue;
      }
      // A build of kiln's comes first; failing that, the upstream's outputs.
      if (input.ignoreIfUpstreamHasOutputs && outputs.length > 0 && outputs.every((o) => onUpstream.has(o))) {
        upstream.add(i);
        continue;
      }
    }
    toMake.push({ id: ids[i]!, outputs });
  }
  return { existing: found, upstream };
}

/**
 * Input sources per statement. PGlite runs a statement on the event loop's thread at
 * about 0.1 ms a row here: a derivation's 5,000 sources in one insert held it half a
 * second; pieces of this size hold it some tens of ms, with I/O run in between.
 */
const SOURCES_PER_STATEMENT = 500;

/** Stores derivations not known yet (with their outputs, sources and input edges). */
async function storeDerivations(db: Database, list: CheckedDerivation[]): Promise<void> {
  if (list.length === 0) return;
  const outputs = list.flatMap((d) => d.outputs.map((o) => ({ drv: d.path, ...o })));
  const sources = list.flatMap((d) => d.inputSrcs.map((path) => ({ drv: d.path, path })));
  const edges = list.flatMap((d) => d.inputDrvs.flatMap((i) => i.outputs.map((outputName) => ({ drv: d.path, input: i.path, outputName }))));
  // Arrays travel as text[]: postgres.js sends a boolean[] as one boolean.
  const text = (values: string[]) => sql`${sql.param(values)}::text[]`;
  await db.execute(sql`
    with stored as (
      insert into derivations (path, name, system, text, fixed_output, hash_modulo, required_features, allow_substitutes)
      -- Features travel space-separated (a feature has no white space; '' is none).
      select path, name, system, text, fixed_output, hash_modulo, string_to_array(features, ' '), allow_substitutes
      from unnest(${text(list.map((d) => d.path))}, ${text(list.map((d) => d.name))}, ${text(list.map((d) => d.system))},
        ${text(list.map((d) => d.text))}, ${text(list.map((d) => String(d.fixedOutput)))}::boolean[], ${text(list.map((d) => d.hashModulo))},
        ${text(list.map((d) => d.requiredFeatures.join(' ')))}, ${text(list.map((d) => String(d.allowSubstitutes)))}::boolean[])
        as d(path, name, system, text, fixed_output, hash_modulo, features, allow_substitutes)
      on conflict do nothing),
    outputs as (
      insert into derivation_outputs (derivation_path, name, path, hash_algo, hash)
      select * from unnest(${text(outputs.map((o) => o.drv))}, ${text(outputs.map((o) => o.name))}, ${text(outputs.map((o) => o.path))},
        ${text(outputs.map((o) => o.hashAlgo))}, ${text(outputs.map((o) => o.hash))})
      on conflict do nothing)
    insert into derivation_inputs (derivation_path, input_path, output_name)
    select * from unnest(${text(edges.map((e) => e.drv))}, ${text(edges.map((e) => e.input))}, ${text(edges.map((e) => e.outputName))})
    on conflict do nothing`);
  // Sources go after their derivations (their foreign key), in the same transaction.
  for (let i = 0; i < sources.length; i += SOURCES_PER_STATEMENT) {
    const piece = sources.slice(i, i + SOURCES_PER_STATEMENT);
    await db.execute(sql`
      insert into derivation_sources (derivation_path, path)
      select * from unnest(${text(piece.map((s) => s.drv))}, ${text(piece.map((s) => s.path))})
      on conflict do nothing`);
  }
}

/** A build's time limit: whole seconds, 0 for the farm's default, at most 30 days. */
function validateLimit(seconds: number | undefined, field: string): void {
  if (seconds === undefined) return;
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 30 * 24 * 3600) {
    throw invalidArgument(`${field} ${seconds} must be whole seconds between 0 (the farm's default) and 30 days`);
  }
}
