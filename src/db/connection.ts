// Opens the coordinator's database: PostgreSQL when given a URL, else PGlite (embedded
// PostgreSQL) in a data directory, so a new user needs no server. Migrations run here.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { PoolUse, trackPglite, trackPostgresPool } from './pool-use.js';
import * as schema from './schema.js';

export type Schema = typeof schema;
/** The one database type the rest of kiln uses, whichever driver is behind it. */
export type Database = PgDatabase<PgQueryResultHKT, Schema>;

export interface DatabaseHandle {
  db: Database;
  kind: 'postgres' | 'pglite';
  /** How busy the connection pool is (for metrics). */
  pool: PoolUse;
  /**
   * LISTENs on a channel: every NOTIFY on it (from this process or any other sharing the
   * database) calls `onPayload`. Resolves once listening, to a function that stops.
   */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export type DatabaseOptions = { url: string } | { dataDir: string } | { memory: true };

/** migrations/ sits at the package root, two levels above this file in src/ and in dist/src/. */
function migrationsFolder(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', '..', 'migrations'), join(here, '..', '..', '..', 'migrations')];
  return candidates.find((c) => existsSync(join(c, 'meta', '_journal.json'))) ?? candidates[0]!;
}

export async function openDatabase(opts: DatabaseOptions): Promise<DatabaseHandle> {
  const folder = migrationsFolder();
  if ('url' in opts) {
    const { default: postgres } = await import('postgres');
    const { drizzle } = await import('drizzle-orm/postgres-js');
    const { migrate } = await import('drizzle-orm/postgres-js/migrator');
    // Quiet the server's NOTICEs (e.g. "schema already exists") that postgres.js prints.
    const client = postgres(opts.url, { max: 10, onnotice: () => {} });
    const pool = new PoolUse(10);
    trackPostgresPool(client, pool);
    const db = drizzle(client, { schema });
    try {
      await migrate(db, { migrationsFolder: folder });
    } catch (err) {
      await client.end();
      throw err;
    }
    return {
      db: db as unknown as Database,
      kind: 'postgres',
      pool,
      async listen(channel, onPayload) {
        const { unlisten } = await client.listen(channel, onPayload);
        return unlisten;
      },
      close: () => client.end(),
    };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');
  let client: InstanceType<typeof PGlite>;
  if ('dataDir' in opts) {
    mkdirSync(opts.dataDir, { recursive: true });
    client = new PGlite(opts.dataDir);
  } else {
    client = new PGlite();
  }
  const pool = new PoolUse(1);
  trackPglite(client, pool);
  const db = drizzle(client, { schema });
  try {
    await migrate(db, { migrationsFolder: folder });
  } catch (err) {
    await client.close();
    throw err;
  }
  return {
    db: db as unknown as Database,
    kind: 'pglite',
    pool,
    listen: (channel, onPayload) => client.listen(channel, onPayload),
    close: () => client.close(),
  };
}
