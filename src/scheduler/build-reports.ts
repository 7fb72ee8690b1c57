// What agents report about the builds they hold: started, setup failure, finished.
// An agent may only report on a build allocated to it; reporting the same thing twice
// is harmless (a reconnecting agent may repeat itself).
import { and, eq, inArray, isNotNull, lt, sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { buildAttempts, builds, derivationOutputs, events, storePaths } from '../db/schema.js';
import { KilnError } from '../errors.js';
import { isUuid } from '../uuid.js';
import { buildOfAgent } from './build-outputs.js';
import { outputProblems, type ReportedOutput } from './output-check.js';

export type FinishOutcome = 'success' | 'failure' | 'timeout' | 'silent-timeout';
export type SetupFailureKind = 'missing-inputs' | 'could-not-delete-outputs' | 'other';

type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];

const HELD = ['allocated', 'started'] as const;

/** Loads the build inside the transaction, locked, and checks the agent holds it. */
function heldBuild(tx: Tx, agentId: string, buildId: string) {
  return buildOfAgent(tx, agentId, buildId, { lock: true });
}

function endAttempt(tx: Tx, buildId: string, attempt: number, outcome: string, message: string) {
  return tx
    .update(buildAttempts)
    .set({ endedAt: sql`now()`, outcome, message })
    .where(and(eq(buildAttempts.buildId, buildId), eq(buildAttempts.attempt, attempt)));
}

export async function recordStarted(db: Database, agentId: string, buildId: string): Promise<void> {
  await db.transaction(async (tx) => {
    const build = await heldBuild(tx, agentId, buildId);
    if (build.state === 'started') return;
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

/** The agent could not set the build up: it goes back to the queue for any agent. */
export async function recordSetupFailure(
  db: Database,
  agentId: string,
  buildId: string,
  failure: { kind: SetupFailureKind; missingInputs: string[]; message: string },
): Promise<void> {
  await db.transaction(async (tx) => {
    const build = await heldBuild(tx, agentId, buildId);
    if (!(HELD as readonly string[]).includes(build.state)) return; // already handled
    await tx
      .update(builds)
      .set({ state: 'scheduled', agentId: null, leaseUntil: null, updatedAt: sql`now()` })
      .where(eq(builds.id, buildId));
    await endAttempt(tx, buildId, build.attempt, 'setup-failure', `${failure.kind}: ${failure.message}`);
    const type = failure.kind === 'missing-inputs' ? 'build-missing-inputs' : 'build-setup-failure';
    await tx.insert(events).values({
      type,
      buildId,
      agentId,
      payload: { attempt: build.attempt, kind: failure.kind, missingInputs: failure.missingInputs, message: failure.message },
    });
  });
}

/**
 * The build finished on the agent. Success needs every output of the derivation in the
 * cache already (uploaded before the report) and reported as stored, else nothing
 * changes and the agent is told.
 */
export async function recordFinished(
  db: Database,
  agentId: string,
  buildId: string,
  outcome: FinishOutcome,
  message: string,
  reported: ReportedOutput[],
): Promise<void> {
  await db.transaction(async (tx) => {
    const build = await heldBuild(tx, agentId, buildId);
    const finalState = outcome === 'success' ? 'succeeded' : 'failed';
    if (build.state === finalState) return; // a repeated report
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
        })
        .from(derivationOutputs)
        .leftJoin(storePaths, eq(storePaths.path, derivationOutputs.path))
        .where(eq(derivationOutputs.derivationPath, build.derivationPath));
      const expected = outputs.map((o) => ({
        name: o.name,
        path: o.path,
        stored: o.narHash === null || o.narSize === null ? undefined : { narHash: o.narHash, narSize: o.narSize, buildId: o.buildId },
      }));
      const problems = outputProblems(buildId, expected, reported);
      if (problems.length > 0) throw new KilnError('failed_precondition', `build ${buildId} cannot succeed: ${problems.join('; ')}`);
    }
    await tx
      .update(builds)
      .set({ state: finalState, leaseUntil: null, updatedAt: sql`now()`, endedAt: sql`now()` })
      .where(eq(builds.id, buildId));
    await endAttempt(tx, buildId, build.attempt, outcome, message);
    await tx.insert(events).values({
      type: outcome === 'success' ? 'build-success' : 'build-failure',
      buildId,
      agentId,
      payload: { attempt: build.attempt, outcome, message },
    });
  });
}

/** The agent's stream ended: its builds stay its own until the lease runs out. */
export async function startLeases(db: Database, agentId: string, leaseMs: number): Promise<void> {
  await db
    .update(builds)
    .set({ leaseUntil: sql`now() + make_interval(secs => ${leaseMs / 1000})` })
    .where(and(eq(builds.agentId, agentId), inArray(builds.state, [...HELD])));
}

/**
 * The agent (re)connected and says which builds it holds. Its builds it still holds keep
 * going; the ones it lost go back to the queue; held ones no longer its are abandoned.
 */
export async function reconcileHeldBuilds(db: Database, agentId: string, held: string[]): Promise<{ abandon: string[] }> {
  const heldIds = held.filter(isUuid);
  return db.transaction(async (tx) => {
    const mine = await tx
      .select({ id: builds.id, attempt: builds.attempt })
      .from(builds)
      .where(and(eq(builds.agentId, agentId), inArray(builds.state, [...HELD])))
      .for('update');
    const lost = mine.filter((b) => !heldIds.includes(b.id));
    for (const b of lost) await requeue(tx, b.id, b.attempt, agentId, 'the agent reconnected without it');
    const kept = mine.filter((b) => heldIds.includes(b.id)).map((b) => b.id);
    if (kept.length > 0) await tx.update(builds).set({ leaseUntil: null }).where(inArray(builds.id, kept));
    return { abandon: held.filter((id) => !kept.includes(id)) };
  });
}

/** Builds whose agent did not come back within the lease go back to the queue. */
export async function expireLeases(db: Database): Promise<string[]> {
  return db.transaction(async (tx) => {
    const expired = await tx
      .select({ id: builds.id, attempt: builds.attempt, agentId: builds.agentId })
      .from(builds)
      .where(and(inArray(builds.state, [...HELD]), isNotNull(builds.leaseUntil), lt(builds.leaseUntil, sql`now()`)))
      .for('update', { skipLocked: true });
    for (const b of expired) await requeue(tx, b.id, b.attempt, b.agentId, 'the agent was gone longer than the lease');
    return expired.map((b) => b.id);
  });
}

/** A build claimed for an agent whose stream ended before the assignment reached it. */
export async function returnUndelivered(db: Database, agentId: string, buildId: string): Promise<void> {
  await db.transaction(async (tx) => {
    const [build] = await tx.select().from(builds).where(eq(builds.id, buildId)).for('update');
    if (build?.agentId === agentId && build.state === 'allocated') {
      await requeue(tx, buildId, build.attempt, agentId, 'the assignment never reached the agent');
    }
  });
}

async function requeue(tx: Tx, buildId: string, attempt: number, agentId: string | null, why: string): Promise<void> {
  await tx
    .update(builds)
    .set({ state: 'scheduled', agentId: null, leaseUntil: null, updatedAt: sql`now()` })
    .where(eq(builds.id, buildId));
  await endAttempt(tx, buildId, attempt, 'agent-lost', why);
  await tx.insert(events).values({ type: 'build-agent-lost', buildId, agentId, payload: { attempt, reason: why } });
}
