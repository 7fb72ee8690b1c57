// Closing the database while queries still wait for a connection: they finish, and
// nothing is left connected afterwards (a connection left open keeps the coordinator's
// process alive after its stop). PostgreSQL only: PGlite runs in the process and has no
// connections to leave open.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { openDatabase } from '../../src/db/connection.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { waitUntil } from '../helpers/wait.js';

describe('closing the PostgreSQL database', () => {
  let database: TestDatabase;
  let observer: postgres.Sql;
  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    observer = postgres(database.url!, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await observer?.end();
    await database?.drop();
  });

  /** This test database's other sessions. */
  const sessions = async () =>
    Number((await observer<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`)[0]!.n);

  test('queries queued behind a full pool finish, then every connection is gone', async () => {
    const handle = await openDatabase(database.options);
    // Three times the pool: most of them wait for a connection when close() is called.
    const queries = Array.from({ length: 30 }, (_, i) => handle.db.execute(sql`select pg_sleep(0.02), ${i}::int as i`).then(() => i));
    await new Promise<void>((resolve) => setImmediate(resolve));
    await handle.close();
    expect((await Promise.all(queries)).length).toBe(30);
    // The server drops a session when its socket closes: wait for that, with a bound.
    await waitUntil(async () => (await sessions()) === 0, 10_000, async () => `${await sessions()} sessions still open`, 1);
    await expect(handle.db.execute(sql`select 1`)).rejects.toThrow();
  });
});
