// The database side of upstream lookups: the configured list (so that SQL and replicas
// see it) and each upstream's answers with their lifetimes.
import { sql } from 'drizzle-orm';
import type { Database } from '../../db/connection.js';
import type { Upstream } from './upstream-list.js';

type Executor = Pick<Database, 'execute'>;

/** Makes the stored list this one (answers of upstreams no longer listed then count for nothing). */
export async function storeUpstreamList(db: Database, list: readonly Upstream[]): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.execute(sql`delete from upstreams`);
    if (list.length === 0) return;
    await tx.execute(sql`
      insert into upstreams (url, position, for_outputs, for_derivations)
      select * from unnest(${sql.param(list.map((u) => u.url))}::text[], ${sql.param(list.map((_, i) => i))}::int[],
        ${sql.param(list.map((u) => String(u.forOutputs)))}::text[]::boolean[], ${sql.param(list.map((u) => String(u.forDerivations)))}::text[]::boolean[])`);
  });
}

export interface LookupRecord {
  upstream: string;
  path: string;
  outcome: 'hit' | 'miss' | 'error';
  reason: string;
  ttlMs: number;
}

/** Remembers answers, one statement for the lot. */
export async function recordLookups(db: Executor, records: readonly LookupRecord[]): Promise<void> {
  if (records.length === 0) return;
  const col = (f: (r: LookupRecord) => string) => sql`${sql.param(records.map(f))}::text[]`;
  await db.execute(sql`
    insert into upstream_lookups (upstream, path, outcome, reason, checked_at, expires_at)
    select r.upstream, r.path, r.outcome, r.reason, now(), now() + r.ttl::bigint * interval '1 millisecond'
    from unnest(${col((r) => r.upstream)}, ${col((r) => r.path)}, ${col((r) => r.outcome)}, ${col((r) => r.reason)}, ${col((r) => String(r.ttlMs))})
      as r(upstream, path, outcome, reason, ttl)
    on conflict (path, upstream) do update set outcome = excluded.outcome, reason = excluded.reason,
      checked_at = excluded.checked_at, expires_at = excluded.expires_at`);
}
