// The built-in hook that records how a fixed-output re-check ended: when a check's build
// reaches a final state, its fod_checks row gets the outcome and (for a failure) the
// fetcher's message, and a fod-check-passed / fod-check-failed event is written in the
// same transaction, for operators' hooks. Run at least once: a repeated delivery finds
// the row recorded and writes nothing.
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { events } from '../db/schema.js';
import type { Hook } from '../hooks/hook.js';

export const FOD_CHECK_HOOK = 'fod-check';

export interface FodCheckFinished {
  buildId: string;
  derivationPath: string;
  outcome: 'passed' | 'failed' | 'canceled';
  message: string;
}

export function fodCheckHook(db: Database, finished: (check: FodCheckFinished) => void): Hook {
  return {
    name: FOD_CHECK_HOOK,
    events: ['build-success', 'build-failure', 'build-canceled'],
    concurrency: 2,
    maxAttempts: 10,
    timeoutMs: 60_000,
    async handle(event) {
      if (!event.buildId) return;
      const check = await recordOutcome(db, event.buildId, new Date(event.createdAt));
      if (check) finished(check);
    },
  };
}

const OUTCOME_OF_STATE: Record<string, FodCheckFinished['outcome']> = { succeeded: 'passed', failed: 'failed', canceled: 'canceled' };

/**
 * Records the check's outcome from its build's state, if the build is a check, has ended
 * (a failure that is retried has not) and its row does not say so yet. Undefined when
 * nothing was recorded.
 */
async function recordOutcome(db: Database, buildId: string, eventAt: Date): Promise<FodCheckFinished | undefined> {
  return db.transaction(async (tx) => {
    const [row] = rowsOf<{ derivation_path: string; state: string; message: string | null; failure_reason: string | null; outcome: string | null; finished_at: string | Date | null }>(
      await tx.execute(sql`
        select f.derivation_path, b.state, f.outcome, f.finished_at, b.failure_reason,
          (select a.message from build_attempts a where a.build_id = b.id order by a.attempt desc limit 1) as message
        from fod_checks f join builds b on b.id = f.build_id
        where f.build_id = ${buildId}::uuid
        for update of f`),
    );
    const outcome = row && OUTCOME_OF_STATE[row.state];
    if (!row || !outcome) return undefined;
    // Recorded already (this event delivered again), unless the build was retried since.
    if (row.outcome !== null && row.finished_at !== null && new Date(row.finished_at) >= eventAt) return undefined;
    const message = outcome === 'failed' ? (row.message || row.failure_reason || 'the build failed') : '';
    await tx.execute(sql`update fod_checks set outcome = ${outcome}, message = ${message}, finished_at = now() where build_id = ${buildId}::uuid`);
    if (outcome !== 'canceled') {
      await tx.insert(events).values({ type: `fod-check-${outcome}`, buildId, payload: { derivationPath: row.derivation_path, message } });
    }
    return { buildId, derivationPath: row.derivation_path, outcome, message };
  });
}
