// The database pool's use, as /metrics reports it, counts what runs through the driver.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { sql } from 'drizzle-orm';
import { openDatabase, type DatabaseHandle } from '../../src/db/connection.js';
import { createTestDatabase, DATABASE_KINDS, type TestDatabase } from '../helpers/databases.js';

describe.each(DATABASE_KINDS)('pool use on %s', (kind) => {
  let database: TestDatabase;
  let handle: DatabaseHandle;
  beforeAll(async () => {
    database = await createTestDatabase(kind);
    handle = await openDatabase(database.options);
  });
  afterAll(async () => {
    await handle?.close();
    await database?.drop();
  });

  test('a running query and an open transaction each hold a connection until they end', async () => {
    expect(handle.pool.snapshot()).toEqual({ max: kind === 'pglite' ? 1 : 10, inUse: 0, waiting: 0 });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let inside!: () => void;
    const entered = new Promise<void>((r) => (inside = r));
    const tx = handle.db.transaction(async (t) => {
      await t.execute(sql`select 1`);
      inside();
      await held;
    });
    let query: Promise<unknown> | undefined;
    try {
      await entered;
      expect(handle.pool.snapshot().inUse).toBe(1);
      // PGlite has one connection, held by the transaction: a query beside it waits.
      // (drizzle sends a query when it is awaited: then() starts it.)
      query = handle.db.execute(kind === 'postgres' ? sql`select pg_sleep(0.2)` : sql`select 1`).then(() => undefined);
      await new Promise<void>((r) => setImmediate(r));
      expect(handle.pool.snapshot()).toEqual(kind === 'pglite' ? { max: 1, inUse: 1, waiting: 1 } : { max: 10, inUse: 2, waiting: 0 });
    } finally {
      release();
    }
    await Promise.all([tx, query]);
    expect(handle.pool.snapshot()).toEqual({ max: kind === 'pglite' ? 1 : 10, inUse: 0, waiting: 0 });
  });
});
