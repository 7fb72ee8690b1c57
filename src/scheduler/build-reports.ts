// What agents report about the builds they hold: started, setup failure, finished.
// An agent may only report on a build allocated to it; reporting the same thing twice
// is harmless (a reconnecting agent may repeat itself).
import { and, eq, inArray, isNotNull, lt, sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { buildAttempts, buildExclusions, builds, buildTags, derivationOutputs, events, pendingOutputs, storePaths } from '../db/schema.js';
import { KilnError } from '../errors.js';
import { storableText } from '../db/storable-text.js';
import { isUuid } from '../uuid.js';
import { addWaits, releasePaths } from './availability.js';
import { dropPending, servePending } from './pending-outputs.js';
import { failDependentsOf, failDoomed } from './dependency-failures.js';
import { buildOfAgent } from './build-outputs.js';
import { raiseInputs } from './priorities.js';
import { outputProblems, type ReportedOutput } from './output-check.js';
import { startAllocated, succeedHeld } from './report-statements.js';
import { decideRetry, ruleFor, type FailureKind, type RetryPolicy } from './retry-policy.js';
import { submitBuildsForMissing } from './new-builds.js';
import { distrustUpstreamHits } from './upstream-waits.js';
import { checkBuildEnded, checkedBuildSucceeded, type CheckEffects } from './reproducibility.js';

/** What the scheduler's reactions to reports depend on. */
export interface ReportPolicy {
  retry: RetryPolicy;
  /** How long a build stays with an agent the coordinator has not heard from. */
  leaseMs: number;
}

/** What a report changed that the coordinator must act on after the commit. */
export interface ReportEffects {
  /** Builds that went back to the queue (now or after a backoff). */
  requeued: string[];
  /** Builds created for missing inputs. */
  submitted: string[];
  /** Backoffs of the builds requeued for later: when to look for work again. */
  retryInMs: number[];
  /** Builds made ready by the outputs the report served. */
  ready?: string[];
  /** Builds that ended because of the report (dependents of a build that failed for good). */
  ended?: string[];
  /** The report was taken before (the agent repeated itself): nothing changed, nothing to count. */
  repeated?: true;
  /**
   * The report was the agent's own fault, in words for the agent: it called inputs missing
   * that the cache holds. Counted and told to the agent; the attempt failed as a setup
   * failure, retried as the policy says.
   */
  agentFault?: string;
  /** Reproducibility checks the report decided (scheduler/reproducibility.ts). */
  checksDecided?: CheckEffects['decided'];
}

export function noEffects(): ReportEffects {
  return { requeued: [], submitted: [], retryInMs: [] };
}

function repeatedReport(): ReportEffects {
  return { ...noEffects(), repeated: true };
}

export type FinishOutcome = 'success' | 'failure' | 'timeout' | 'silent-timeout' | 'infrastructure' | 'output-too-large' | 'log-too-large';
export type SetupFailureKind = 'missing-inputs' | 'could-not-delete-outputs' | 'other';

type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];

const HELD = ['allocated', 'started'] as const;

/**
 * Loads the build inside the transaction, locked, and checks the agent holds it. A build
 * that left the agent because of this agent's own report (a retry put it back in the
 * queue) yields undefined: the agent repeated itself, which is harmless.
 */
async function heldBuild(tx: Tx, agentId: string, buildId: string) {
  try {
    return await buildOfAgent(tx, agentId, buildId, { lock: true });
  } catch (err) {
    if (!(err instanceof KilnError) || err.kind !== 'permission_denied') throw err;
    const [reported] = await tx
      .select({ attempt: buildAttempts.attempt })
      .from(buildAttempts)
      .innerJoin(builds, and(eq(builds.id, buildAttempts.buildId), eq(builds.attempt, buildAttempts.attempt)))
      .where(and(eq(buildAttempts.buildId, buildId), eq(buildAttempts.agentId, agentId), isNotNull(buildAttempts.outcome)));
    if (reported) return undefined;
    throw err;
  }
}

function endAttempt(tx: Tx, buildId: string, attempt: number, outcome: string, message: string) {
  return tx
    .update(buildAttempts)
    .set({ endedAt: sql`now()`, outcome, message })
    .where(and(eq(buildAttempts.buildId, buildId), eq(buildAttempts.attempt, attempt)));
}

export async function recordStarted(db: Database, agentId: string, buildId: string): Promise<void> {
  if (await startAllocated(db, agentId, buildId)) return;
  await db.transaction(async (tx) => {
    const build = await heldBuild(tx, agentId, buildId);
    if (!build || build.state === 'started') return;
    if (build.state !== 'allocated') {
      throw new KilnError('failed_precondition', `build ${buildId} is ${build.state}, not allocated; it cannot start`);
    }
    await tx.update(builds).set({ state: 'started', updatedAt: sql`now()` }).where(eq(builds.id, buildId));
    await tx
      .update(buildAttempts)
      .set({ startedAt: sql`now()` })
      .where(and(eq(buildAttempts.buildId, buildId), eq(buildAttempts.attempt, build.attempt)));
    await tx.insert(events).values({ type: 'build-started', buildId, agentId, payload: { attempt: build.attempt } });
  });
}

/** How long an upstream's word is not taken for a path an agent could not get from it. */
const DISTRUST_MS = 10 * 60_000;

/**
 * The agent could not set the build up. Missing inputs: the build waits for them (and
 * builds are submitted for missing inputs nobody builds); outputs it could not delete:
 * the build goes to another agent; anything else counts as a failed attempt.
 */
export async function recordSetupFailure(
  db: Database,
  policy: ReportPolicy,
  agentId: string,
  buildId: string,
  reportedFailure: { kind: SetupFailureKind; missingInputs: string[]; message: string },
): Promise<ReportEffects> {
  const failure = { ...reportedFailure, message: storableText(reportedFailure.message), missingInputs: reportedFailure.missingInputs.map((p) => storableText(p, 1024)) };
  return db.transaction(async (tx) => {
    const effects: ReportEffects = noEffects();
    const build = await heldBuild(tx, agentId, buildId);
    if (!build || !(HELD as readonly string[]).includes(build.state)) return repeatedReport(); // already handled
    const type = failure.kind === 'missing-inputs' ? 'build-missing-inputs' : 'build-setup-failure';
    await tx.insert(events).values({
      type,
      buildId,
      agentId,
      payload: { attempt: build.attempt, kind: failure.kind, missingInputs: failure.missingInputs, message: failure.message },
    });
    if (failure.kind === 'missing-inputs') {
      const paths = await missingPaths(tx, build.derivationPath, failure.missingInputs);
      await toQueue(tx, buildId, null);
      await distrustUpstreamHits(tx, paths, DISTRUST_MS);
      const waiting = await addWaits(tx, buildId, paths);
      if (waiting === 0) {
        // The cache has them all: the agent could not fetch what is there (a stale miss
        // its Nix remembered, a network fault). A setup failure like any other, counted
        // as one so that the retry policy bounds it, never a missing-inputs loop.
        const fault =
          `the agent reported ${failure.missingInputs.join(' ') || 'inputs'} missing, but the cache holds every input of this build it named: ` +
          'the agent could not fetch what is there';
        const failed = await failAttempt(tx, policy, build, agentId, 'setup-failure', `${fault} (${failure.message})`);
        return { ...failed, agentFault: fault };
      }
      await endAttempt(tx, buildId, build.attempt, 'missing-inputs', failure.message);
      effects.requeued.push(buildId);
      effects.submitted = await submitBuildsForMissing(tx, { id: buildId }, paths);
      // An input whose builds all failed will not come: the build fails for it.
      const doomed = await failDoomed(tx, [buildId]);
      if (doomed.length > 0) return { ...noEffects(), submitted: effects.submitted, ended: doomed };
      await raiseInputs(tx, [buildId]);
      return effects;
    }
    if (failure.kind === 'could-not-delete-outputs') {
      await endAttempt(tx, buildId, build.attempt, 'setup-failure', `${failure.kind}: ${failure.message}`);
      await tx.insert(buildExclusions).values({ buildId, agentId, reason: failure.message }).onConflictDoNothing();
      await toQueue(tx, buildId, null);
      effects.requeued.push(buildId);
      return effects;
    }
    return failAttempt(tx, policy, build, agentId, 'setup-failure', `${failure.kind}: ${failure.message}`);
  });
}

/**
 * The store paths behind what an agent called missing: a .drv stands for those of its
 * outputs this build uses; anything else is a path itself. Only inputs of the build count.
 */
async function missingPaths(tx: Tx, derivationPath: string, missing: string[]): Promise<string[]> {
  const inputs = await tx.execute(sql`
    select i.input_path as drv, o.path from derivation_inputs i
    join derivation_outputs o on o.derivation_path = i.input_path and o.name = i.output_name
    where i.derivation_path = ${derivationPath}
    union all
    select null as drv, s.path from derivation_sources s where s.derivation_path = ${derivationPath}`);
  const rows = (Array.isArray(inputs) ? inputs : (inputs as { rows: unknown[] }).rows) as { drv: string | null; path: string }[];
  const wanted = new Set(missing);
  return [...new Set(rows.filter((r) => wanted.has(r.path) || (r.drv !== null && wanted.has(r.drv))).map((r) => r.path))];
}

/**
 * The build finished on the agent. Success needs every output of the derivation in the
 * cache already (uploaded before the report) and reported as stored, else nothing
 * changes and the agent is told.
 */
export async function recordFinished(
  db: Database,
  policy: ReportPolicy,
  agentId: string,
  buildId: string,
  outcome: FinishOutcome,
  reportedMessage: string,
  reportedOutputs: ReportedOutput[],
): Promise<ReportEffects> {
  const message = storableText(reportedMessage);
  // Names, paths and hashes are only compared with what is stored; made storable so that a
  // garbled one is refused for not matching rather than failing the statement.
  const reported = reportedOutputs.map((r) => ({ ...r, name: storableText(r.name, 1024), path: storableText(r.path, 1024), narHash: storableText(r.narHash, 1024) }));
  if (outcome === 'success' && (await succeedHeld(db, agentId, buildId, message, reported))) return released(db, reported);
  const effects = await db.transaction(async (tx) => {
    const build = await heldBuild(tx, agentId, buildId);
    const finalState = outcome === 'success' ? 'succeeded' : 'failed';
    if (!build || build.state === finalState) return repeatedReport();
    if (!(HELD as readonly string[]).includes(build.state)) {
      throw new KilnError('failed_precondition', `build ${buildId} is ${build.state}; it cannot finish now`);
    }
    if (outcome === 'success') {
      const outputs = await tx
        .select({
          name: derivationOutputs.name,
          path: derivationOutputs.path,
          narHash: storePaths.narHash,
          narSize: storePaths.narSize,
          buildId: storePaths.buildId,
          pendingHash: pendingOutputs.narHash,
          pendingSize: pendingOutputs.narSize,
        })
        .from(derivationOutputs)
        .leftJoin(storePaths, eq(storePaths.path, derivationOutputs.path))
        .leftJoin(
          pendingOutputs,
          and(eq(pendingOutputs.buildId, buildId), eq(pendingOutputs.attempt, build.attempt), eq(pendingOutputs.name, derivationOutputs.name)),
        )
        .where(eq(derivationOutputs.derivationPath, build.derivationPath));
      // What the cache serves for the path, else what this attempt uploaded for it. A
      // check build's outputs are its own, whatever the cache serves.
      const expected = outputs.map((o) => ({
        name: o.name,
        path: o.path,
        stored:
          o.narHash !== null && o.narSize !== null && !build.checkOf
            ? { narHash: o.narHash, narSize: o.narSize, buildId: o.buildId }
            : o.pendingHash !== null && o.pendingSize !== null
              ? { narHash: o.pendingHash, narSize: o.pendingSize, buildId }
              : undefined,
      }));
      const problems = outputProblems(buildId, expected, reported);
      if (problems.length > 0) throw new KilnError('failed_precondition', `build ${buildId} cannot succeed: ${problems.join('; ')}`);
    }
    if (outcome !== 'success') return failAttempt(tx, policy, build, agentId, outcome, message);
    await tx
      .update(builds)
      .set({ state: finalState, leaseUntil: null, updatedAt: sql`now()`, endedAt: sql`now()` })
      .where(eq(builds.id, buildId));
    await endAttempt(tx, buildId, build.attempt, outcome, message);
    if (!build.checkOf) await servePending(tx, buildId, build.attempt);
    const checks = await checkedBuildSucceeded(tx, buildId, build.checkOf, build.attempt);
    const payload = { attempt: build.attempt, outcome, message, ...(build.checkOf ? { checkOf: build.checkOf } : {}) };
    await tx.insert(events).values({ type: 'build-success', buildId, agentId, payload });
    return { ...noEffects(), submitted: checks.submitted, checksDecided: checks.decided };
  });
  if (outcome !== 'success' || effects.repeated) return effects;
  return { ...effects, ...(await released(db, reported)), submitted: effects.submitted, checksDecided: effects.checksDecided };
}

/** A success's outputs are served now: the builds that waited for them (after the commit; see availability.ts). */
async function released(db: Database, reported: ReportedOutput[]): Promise<ReportEffects> {
  return { ...noEffects(), ready: await releasePaths(db, reported.map((r) => r.path)) };
}


/**
 * An attempt failed: the retry policy for the build's tags says whether it goes back to
 * the queue (after a backoff) or the build has failed.
 */
async function failAttempt(
  tx: Tx,
  policy: ReportPolicy,
  build: { id: string; attempt: number },
  agentId: string | null,
  kind: FailureKind,
  message: string,
  opts: { attemptEnded?: boolean } = {},
): Promise<ReportEffects> {
  if (!opts.attemptEnded) await endAttempt(tx, build.id, build.attempt, kind, message);
  await dropPending(tx, build.id);
  const tags = await tx.select({ key: buildTags.key, value: buildTags.value }).from(buildTags).where(eq(buildTags.buildId, build.id));
  const counted = ruleFor(policy.retry, tags).on;
  const [{ failed } = { failed: 0 }] = await tx
    .select({ failed: sql<number>`count(*)::int` })
    .from(buildAttempts)
    .where(and(eq(buildAttempts.buildId, build.id), inArray(buildAttempts.outcome, counted.length > 0 ? counted : ['-'])));
  const decision = decideRetry(policy.retry, tags, kind, Number(failed) || 1);
  const payload = { attempt: build.attempt, outcome: kind, message, retry: decision.retry, ...(decision.retry ? { delayMs: decision.delayMs } : {}) };
  if (kind === 'agent-lost') {
    await tx.insert(events).values({ type: 'build-agent-lost', buildId: build.id, agentId, payload });
  }
  if (decision.retry) {
    await toQueue(tx, build.id, decision.delayMs);
    if (kind !== 'agent-lost') await tx.insert(events).values({ type: 'build-failure', buildId: build.id, agentId, payload });
    return { ...noEffects(), requeued: [build.id], retryInMs: decision.delayMs > 0 ? [decision.delayMs] : [] };
  }
  await tx
    .update(builds)
    .set({ state: 'failed', leaseUntil: null, updatedAt: sql`now()`, endedAt: sql`now()` })
    .where(eq(builds.id, build.id));
  await tx.insert(events).values({ type: 'build-failure', buildId: build.id, agentId, payload });
  const checks = await checkBuildEnded(tx, build.id, `failed: ${message}`);
  // Builds waiting for what it would have made wait for nothing that will come.
  return { ...noEffects(), ended: await failDependentsOf(tx, [build.id]), checksDecided: checks.decided };
}

/** Back to the queue, free of any agent, not before `delayMs` from now (null: at once). */
async function toQueue(tx: Tx, buildId: string, delayMs: number | null): Promise<void> {
  // Whatever the attempt uploaded is not served: the next attempt's outputs stand alone.
  await dropPending(tx, buildId);
  await tx
    .update(builds)
    .set({
      state: 'scheduled',
      agentId: null,
      leaseUntil: null,
      notBefore: delayMs ? sql`now() + make_interval(secs => ${delayMs / 1000})` : null,
      updatedAt: sql`now()`,
    })
    .where(eq(builds.id, buildId));
}

/**
 * The coordinator still hears from these agents: their builds' leases start again. A
 * build whose lease runs out (its agent gone, or the coordinator that heard from it
 * gone) goes back to the queue, whichever replica notices.
 */
export async function renewLeases(db: Database, agentIds: string[], leaseMs: number): Promise<void> {
  if (agentIds.length === 0) return;
  // Builds locked now are being reported on (their agent is alive) and keep their lease
  // until the next round; waiting for them could deadlock with reports that lock many.
  await db.execute(sql`
    with due as (
      select id from builds
      where agent_id = any(${sql.param(agentIds)}::uuid[]) and state in ('allocated', 'started')
      order by id for update skip locked)
    update builds b set lease_until = now() + make_interval(secs => ${leaseMs / 1000})
    from due where b.id = due.id`);
}

/**
 * The agent (re)connected and says which builds it holds. Its builds it still holds keep
 * going (with a fresh lease); the ones it lost are failed attempts (agent-lost); held
 * ones no longer its are abandoned.
 */
export async function reconcileHeldBuilds(
  db: Database,
  policy: ReportPolicy,
  agentId: string,
  held: string[],
): Promise<{ abandon: string[]; effects: ReportEffects }> {
  const heldIds = held.filter(isUuid);
  return db.transaction(async (tx) => {
    const mine = await tx
      .select({ id: builds.id, attempt: builds.attempt })
      .from(builds)
      .where(and(eq(builds.agentId, agentId), inArray(builds.state, [...HELD])))
      .orderBy(builds.id) // the order every statement that locks many builds takes them in
      .for('update');
    const effects: ReportEffects = noEffects();
    for (const b of mine.filter((b) => !heldIds.includes(b.id))) {
      merge(effects, await failAttempt(tx, policy, b, agentId, 'agent-lost', 'the agent reconnected without it'));
    }
    const kept = mine.filter((b) => heldIds.includes(b.id)).map((b) => b.id);
    if (kept.length > 0) {
      await tx
        .update(builds)
        .set({ leaseUntil: sql`now() + make_interval(secs => ${policy.leaseMs / 1000})` })
        .where(inArray(builds.id, kept));
    }
    return { abandon: held.filter((id) => !kept.includes(id)), effects };
  });
}

/** Builds whose lease ran out: failed attempts (agent-lost), retried as the policy says. */
export async function expireLeases(db: Database, policy: ReportPolicy): Promise<ReportEffects> {
  return db.transaction(async (tx) => {
    const expired = await tx
      .select({ id: builds.id, attempt: builds.attempt, agentId: builds.agentId })
      .from(builds)
      .where(and(inArray(builds.state, [...HELD]), isNotNull(builds.leaseUntil), lt(builds.leaseUntil, sql`now()`)))
      .for('update', { skipLocked: true });
    const effects: ReportEffects = noEffects();
    for (const b of expired) {
      merge(effects, await failAttempt(tx, policy, b, b.agentId, 'agent-lost', 'the agent was gone longer than the lease'));
    }
    return effects;
  });
}

/** A build claimed for an agent whose stream ended before the assignment reached it: not an attempt at all. */
export async function returnUndelivered(db: Database, agentId: string, buildId: string): Promise<void> {
  await db.transaction(async (tx) => {
    const [build] = await tx.select().from(builds).where(eq(builds.id, buildId)).for('update');
    if (build?.agentId === agentId && build.state === 'allocated') {
      await tx.delete(buildAttempts).where(and(eq(buildAttempts.buildId, buildId), eq(buildAttempts.attempt, build.attempt)));
      await tx.update(builds).set({ attempt: build.attempt - 1 }).where(eq(builds.id, buildId));
      await toQueue(tx, buildId, null);
    }
  });
}

function merge(into: ReportEffects, more: ReportEffects): void {
  into.requeued.push(...more.requeued);
  into.submitted.push(...more.submitted);
  into.retryInMs.push(...more.retryInMs);
  if (more.ended?.length) (into.ended ??= []).push(...more.ended);
}
