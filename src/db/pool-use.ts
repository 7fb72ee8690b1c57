// How much of the database connection pool is in use, for the coordinator's metrics.
// Neither driver reports it, so the queries and transactions kiln runs through them are
// counted: each holds a connection while it runs, and any beyond the pool's size wait.
import type { PGlite } from '@electric-sql/pglite';
import type { Sql } from 'postgres';

export interface PoolSnapshot {
  /** Connections the pool may open. */
  max: number;
  /** Connections busy with a query or a transaction now. */
  inUse: number;
  /** Queries and transactions waiting for a connection. */
  waiting: number;
}

export class PoolUse {
  private running = 0;
  private readonly settling = new Set<() => void>();

  constructor(readonly max: number) {}

  /** Counts one query or transaction until the returned function is called (once). */
  begin(): () => void {
    this.running++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.running--;
      if (this.running === 0) for (const wake of this.settling) wake();
    };
  }

  /** Resolves true once nothing runs or waits, or false after `timeoutMs` if something still does. */
  settled(timeoutMs: number): Promise<boolean> {
    if (this.running === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (settled: boolean) => {
        clearTimeout(timer);
        this.settling.delete(wake);
        resolve(settled);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.settling.add(wake);
    });
  }

  async around<T>(work: () => Promise<T>): Promise<T> {
    const end = this.begin();
    try {
      return await work();
    } finally {
      end();
    }
  }

  snapshot(): PoolSnapshot {
    return { max: this.max, inUse: Math.min(this.max, this.running), waiting: Math.max(0, this.running - this.max) };
  }
}

/** The parts of postgres.js's Query the count hooks into: when it is sent, when it settles. */
interface PendingQuery {
  handler: (query: PendingQuery) => unknown;
  resolve: (value: unknown) => unknown;
  reject: (err: unknown) => unknown;
}

/**
 * Counts postgres.js's queries from when they are handed to the pool until they settle,
 * and transactions for as long as they hold their connection (the queries inside one
 * run on that connection and are not counted again).
 */
export function trackPostgresPool(client: Sql, use: PoolUse): void {
  const unsafe = client.unsafe.bind(client);
  const begin = client.begin.bind(client);
  const counted = (...args: Parameters<Sql['unsafe']>) => {
    const result = unsafe(...args);
    // A transaction's own BEGIN is part of the transaction, counted by `begin` below.
    if (/^begin\b/i.test(String(args[0]))) return result;
    const query = result as unknown as PendingQuery;
    const handler = query.handler;
    query.handler = (q) => {
      const end = use.begin();
      const { resolve, reject } = q;
      q.resolve = (value) => (end(), resolve(value));
      q.reject = (err) => (end(), reject(err));
      return handler(q);
    };
    return result;
  };
  client.unsafe = counted as Sql['unsafe'];
  const counting = (...args: unknown[]) => use.around(() => (begin as (...a: unknown[]) => Promise<unknown>)(...args));
  client.begin = counting as unknown as Sql['begin'];
}

/** PGlite has one connection: what runs through it is counted, the rest waits. */
export function trackPglite(client: PGlite, use: PoolUse): void {
  const query = client.query.bind(client);
  const transaction = client.transaction.bind(client);
  client.query = ((...args: Parameters<PGlite['query']>) => use.around(() => query(...args))) as PGlite['query'];
  client.transaction = ((...args: Parameters<PGlite['transaction']>) => use.around(() => transaction(...args))) as PGlite['transaction'];
}
