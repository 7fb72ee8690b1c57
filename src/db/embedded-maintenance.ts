// PGlite is PostgreSQL in one process, without its background workers: no autovacuum.
// Without it, tables that grew from empty never get planner statistics (a queue of tens of
// thousands of builds was planned as if it held a handful, and one submission took long
// enough to block the event loop past HTTP/2's ping timeout), and the dead rows every
// state change leaves behind are never reclaimed. So the coordinator does autovacuum's
// job for PGlite, with autovacuum's default thresholds, from the same statistics.
import { sql } from 'drizzle-orm';
import type { Database } from './connection.js';
import { rowsOf } from './rows.js';
import type { Logger } from '../logger.js';

/** autovacuum_vacuum_threshold / _scale_factor, _insert_*, _analyze_* (PostgreSQL's defaults). */
const VACUUM = { base: 50, scale: 0.2 };
const VACUUM_INSERTS = { base: 1000, scale: 0.2 };
const ANALYZE = { base: 50, scale: 0.1 };

interface TableActivity {
  live: number;
  dead: number;
  insertedSinceVacuum: number;
  modifiedSinceAnalyze: number;
}

export type Upkeep = 'vacuum analyze' | 'analyze';

/** What autovacuum would do to the table now, if anything. */
export function upkeepFor(t: TableActivity): Upkeep | undefined {
  const over = (n: number, { base, scale }: { base: number; scale: number }) => n > base + scale * t.live;
  if (over(t.dead, VACUUM) || over(t.insertedSinceVacuum, VACUUM_INSERTS)) return 'vacuum analyze';
  if (over(t.modifiedSinceAnalyze, ANALYZE)) return 'analyze';
  return undefined;
}

/**
 * Vacuums and analyzes the tables that need it; returns what it did. Statistics reach
 * pg_stat_user_tables about a second after the changes (PostgreSQL flushes them lazily),
 * so a table is looked after at the next round at the latest.
 */
export async function maintainTables(db: Database): Promise<{ table: string; upkeep: Upkeep }[]> {
  const tables = rowsOf<TableActivity & { table: string }>(
    await db.execute(sql`
      select relname as "table", n_live_tup::float8 as live, n_dead_tup::float8 as dead,
        n_ins_since_vacuum::float8 as "insertedSinceVacuum", n_mod_since_analyze::float8 as "modifiedSinceAnalyze"
      from pg_stat_user_tables where schemaname = current_schema()`),
  );
  const done: { table: string; upkeep: Upkeep }[] = [];
  for (const t of tables) {
    const upkeep = upkeepFor(t);
    if (!upkeep) continue;
    // VACUUM cannot run in a transaction block; each statement here runs on its own.
    await db.execute(sql.raw(`${upkeep} ${quoteIdentifier(t.table)}`));
    done.push({ table: t.table, upkeep });
  }
  return done;
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Runs maintainTables every `intervalMs` until stopped; one round at a time. */
export function startEmbeddedMaintenance(db: Database, log: Logger, intervalMs = 10_000): { stop(): Promise<void> } {
  let round: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (round) return;
    round = maintainTables(db)
      .then((done) => {
        if (done.length > 0) log.debug({ tables: done }, 'embedded database maintained');
      })
      .catch((err: unknown) => log.warn({ err }, 'embedded database maintenance failed; it is tried again'))
      .finally(() => {
        round = undefined;
      });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await round;
    },
  };
}
