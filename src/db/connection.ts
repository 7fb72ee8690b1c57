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

/** How long closing waits for running and queued queries, then for connections to end. */
const CLOSE_SETTLE_MS = 10_000;
const CLOSE_END_S = 5;

export async function openDatabase(opts: DatabaseOptions): Promise<DatabaseHandle> {
  const folder = migrationsFolder();
  if ('url' in opts) {
    const { default: postgres } = await import('postgres');
    const { drizzle } = await import('drizzle-orm/postgres-js');
    const { migrate } = await import('drizzle-orm/postgres-js/migrator');
    // Quiet the server's NOTICEs (e.g. "schema already exists") that postgres.js prints.
    // No JIT: kiln's statements are short, and a large row estimate (a recursive or
    // batch statement) made the server compile one for a second before running it.
    const client = postgres(opts.url, { max: 10, onnotice: () => {}, connection: { jit: 'off' } });
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
      close: async () => {
        // postgres.js runs the queries still queued for a connection when end() is called
        // on connections it opens anew afterwards, which then stay open (and keep the
        // process alive): let what runs and waits finish first, within a bound; then end,
        // destroying what is still open after a few seconds.
        await pool.settled(CLOSE_SETTLE_MS);
        await client.end({ timeout: CLOSE_END_S });
      },
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
  const db = drizzle({ client: yieldingToIo(client), schema });
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

/**
 * PGlite runs each statement synchronously on this thread, and statements waiting for
 * it are started from promise callbacks: a backlog of them (hundreds of agents
 * reporting at once) would run back to back without the event loop ever reading a
 * socket, so HTTP/2 pings go unanswered and agents drop. Every statement, in a
 * transaction or not, first lets pending I/O run.
 */
function yieldingToIo<T extends object>(client: T): T {
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  const wrap = <C extends object>(target: C): C =>
    new Proxy(target, {
      get(t, prop) {
        const value: unknown = Reflect.get(t, prop, t);
        if (typeof value !== 'function') return value;
        if (prop === 'query' || prop === 'exec') {
          return async (...args: unknown[]) => {
            await turn();
            return (value as (...a: unknown[]) => unknown).apply(t, args);
          };
        }
        if (prop === 'transaction') {
          return (fn: (tx: object) => unknown) => (value as (f: (tx: object) => unknown) => unknown).call(t, (tx: object) => fn(wrap(tx)));
        }
        // Bound to the real object: PGlite's methods use private fields.
        return (value as (...a: unknown[]) => unknown).bind(t);
      },
    });
  return wrap(client);
}
