// Autovacuum's work, done by the coordinator for PGlite (which has no autovacuum): tables
// with enough dead rows are vacuumed and analyzed, tables that grew are analyzed, the
// rest are left alone. The same statistics exist on PostgreSQL, so both engines run it.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { sql } from 'drizzle-orm';
import { openDatabase, type DatabaseHandle } from '../../src/db/connection.js';
import { maintainTables, upkeepFor } from '../../src/db/embedded-maintenance.js';
import { rowsOf } from '../../src/db/rows.js';
import { createTestDatabase, DATABASE_KINDS, type TestDatabase } from '../helpers/databases.js';

describe('upkeepFor: autovacuum thresholds', () => {
  const table = { live: 10_000, dead: 0, insertedSinceVacuum: 0, modifiedSinceAnalyze: 0 };
  test('dead rows past 50 + 20 % of the live ones: vacuum (and analyze)', () => {
    expect(upkeepFor({ ...table, dead: 2_050 })).toBeUndefined();
    expect(upkeepFor({ ...table, dead: 2_051 })).toBe('vacuum analyze');
  });
  test('inserts past 1000 + 20 %: vacuum, for the visibility map', () => {
    expect(upkeepFor({ ...table, insertedSinceVacuum: 3_001 })).toBe('vacuum analyze');
  });
  test('changes past 50 + 10 %: analyze only', () => {
    expect(upkeepFor({ ...table, modifiedSinceAnalyze: 1_050 })).toBeUndefined();
    expect(upkeepFor({ ...table, modifiedSinceAnalyze: 1_051 })).toBe('analyze');
  });
  test('a table that grew from empty is analyzed at once', () => {
    expect(upkeepFor({ ...table, live: 0, modifiedSinceAnalyze: 51 })).toBe('analyze');
  });
});

describe.each(DATABASE_KINDS)('maintainTables on %s', (kind) => {
  let database: TestDatabase;
  let handle: DatabaseHandle;
  beforeAll(async () => {
    database = await createTestDatabase(kind);
    handle = await openDatabase(database.options);
    // The server's own autovacuum must not get there first.
    for (const table of ['events', 'agents']) await handle.db.execute(sql.raw(`alter table ${table} set (autovacuum_enabled = false)`));
  });
  afterAll(async () => {
    await handle?.close();
    await database?.drop();
  });

  const stats = async (table: string) => {
    const [row] = rowsOf<{ dead: number; vacuumed: boolean; analyzed: boolean }>(
      await handle.db.execute(sql`
        select n_dead_tup::int as dead, last_vacuum is not null as vacuumed, last_analyze is not null as analyzed
        from pg_stat_user_tables where relname = ${table}`),
    );
    return row!;
  };

  test('the table with dead rows is vacuumed and analyzed, once; the others are left alone', async () => {
    await handle.db.transaction(async (tx) => {
      await tx.execute(sql`insert into events (type, payload) select 'maintenance-test', '{}'::jsonb from generate_series(1, 3000)`);
      await tx.execute(sql`update events set payload = '{"touched": true}'::jsonb where type = 'maintenance-test'`);
      // Statistics are flushed lazily; this has them flushed when the transaction ends.
      await tx.execute(sql`select pg_stat_force_next_flush()`);
    });
    expect((await stats('events')).dead).toBeGreaterThanOrEqual(3000);
    expect(await stats('agents')).toMatchObject({ vacuumed: false, analyzed: false });

    const done = await maintainTables(handle.db);
    expect(done).toContainEqual({ table: 'events', upkeep: 'vacuum analyze' });
    expect(done.map((d) => d.table)).not.toContain('agents');
    expect(await stats('events')).toMatchObject({ dead: 0, vacuumed: true, analyzed: true });

    // Nothing changed since: nothing to do.
    expect((await maintainTables(handle.db)).map((d) => d.table)).not.toContain('events');
  });
});
