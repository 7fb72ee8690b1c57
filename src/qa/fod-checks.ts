// Re-checks of fixed-output derivations: which ones are due (filters by tag, name and the
// age of the last check), and a check submitted for each as a build of the derivation at
// a low priority, recorded in fod_checks in the same transaction. The agents' builders
// delete a build's outputs before they build, so the check fetches the source again and
// the hash is checked by the builder; the served output keeps its row whatever the check
// does (a path served is never replaced, and a failure serves nothing).
import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { invalidArgument } from '../errors.js';
import { settleWaits } from '../scheduler/availability.js';
import { validatePriority } from '../scheduler/build-changes.js';
import { insertBuilds } from '../scheduler/new-builds.js';
import { validateTags, type Tag } from '../scheduler/tags.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { restoreDerivationNars } from '../substitutes/derivation-nar.js';
import type { PathSigner } from '../substitutes/narinfo-signer.js';
import { randomUUID } from 'node:crypto';
import { MIN_PRIORITY } from '../protocol/priority.js';

/** The lowest priority there is: a check goes only when nothing else is ready for the agent. */
export const FOD_CHECK_PRIORITY = MIN_PRIORITY;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 10_000;

export type FodCheckOutcome = 'pending' | 'passed' | 'failed' | 'canceled';

export interface FodCheckRecord {
  buildId: string;
  derivationPath: string;
  requestedAt: Date;
  finishedAt: Date | null;
  outcome: FodCheckOutcome;
  message: string;
}

export interface FodCheckFilter {
  /** Derivations with a successful build carrying every one of these tags. */
  tags: Tag[];
  /** The derivation's name; `*` matches any characters. */
  name?: string;
  /** Only those whose last check (never checked: last successful build) is older than this. */
  olderThanMs?: number;
  limit?: number;
}

export interface FodCheckDeps {
  db: Database;
  storage: NarStorage;
  sign?: PathSigner;
}

export interface SubmittedChecks {
  checks: FodCheckRecord[];
  /** Selected, but a check of theirs has not ended yet. */
  alreadyChecking: string[];
}

/**
 * Submits a check for each fixed-output derivation the filter selects (no more than
 * `limit`, the longest unchecked first). `open` is the most checks that may run at once
 * counting those running already (the schedule's concurrency); unset: no bound.
 */
export async function submitFodChecks(deps: FodCheckDeps, filter: FodCheckFilter, opts: { priority?: number; open?: number } = {}): Promise<SubmittedChecks> {
  const limit = filter.limit && filter.limit > 0 ? filter.limit : DEFAULT_LIMIT;
  if (limit > MAX_LIMIT) throw invalidArgument(`limit ${limit}: at most ${MAX_LIMIT} checks are submitted at once`);
  validateTags(filter.tags, 'tags');
  const priority = opts.priority ?? FOD_CHECK_PRIORITY;
  validatePriority(priority);
  if (filter.olderThanMs !== undefined && (!Number.isFinite(filter.olderThanMs) || filter.olderThanMs < 0)) {
    throw invalidArgument(`older than ${filter.olderThanMs} ms: give a duration of 0 or more`);
  }
  const { db, storage, sign } = deps;
  const outcome = await db.transaction(async (tx) => {
    // One submitter at a time over every replica: the count of open checks holds until commit.
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('kiln.qa.fod-checks'))`);
    const room = opts.open === undefined ? limit : Math.min(limit, opts.open - (await openChecks(tx as unknown as Database)));
    if (room <= 0) return { made: [], alreadyChecking: [] };
    const due = await dueDerivations(tx as unknown as Database, filter, room);
    const alreadyChecking = due.filter((d) => d.checking).map((d) => d.path);
    const toCheck = due.filter((d) => !d.checking);
    if (toCheck.length === 0) return { made: [], alreadyChecking };
    // A .drv gc removed comes back, as for any submission.
    await restoreDerivationNars(tx, storage, toCheck.map((d) => d.path), sign);
    const made = toCheck.map((d) => ({ id: randomUUID(), derivationPath: d.path, priority, tags: d.tags, reason: 'fod-check' }));
    await insertBuilds(tx, made);
    await tx.execute(sql`
      insert into fod_checks (build_id, derivation_path)
      select * from unnest(${sql.param(made.map((m) => m.id))}::uuid[], ${sql.param(made.map((m) => m.derivationPath))}::text[])`);
    return { made, alreadyChecking };
  });
  await settleWaits(db, outcome.made.map((m) => m.id));
  const checks = await listFodChecks(db, { buildIds: outcome.made.map((m) => m.id) });
  return { checks, alreadyChecking: outcome.alreadyChecking };
}

/** Checks whose build has not ended. */
async function openChecks(db: Database): Promise<number> {
  const [row] = rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from fod_checks where outcome is null`));
  return Number(row?.n ?? 0);
}

interface Due {
  path: string;
  /** The tags of its last successful build: where it may be built. */
  tags: Tag[];
  checking: boolean;
}

/**
 * Fixed-output derivations with a successful build (not a check) matching the filter,
 * the one whose last check (or build) is oldest first.
 */
async function dueDerivations(db: Database, filter: FodCheckFilter, limit: number): Promise<Due[]> {
  const tagConditions = filter.tags.map((t) => sql`and exists (select 1 from build_tags t where t.build_id = b.id and t.key = ${t.key} and t.value = ${t.value})`);
  const conditions: SQL[] = [];
  if (filter.name) conditions.push(sql`and d.name like ${namePattern(filter.name)} escape '\\'`);
  if (filter.olderThanMs) {
    conditions.push(sql`and coalesce(c.last_check, last.ended_at) < now() - make_interval(secs => ${filter.olderThanMs / 1000})`);
  }
  const rows = rowsOf<{ path: string; build_id: string; checking: boolean; tags: Tag[] | null }>(
    await db.execute(sql`
      select d.path, last.id as build_id, coalesce(c.checking, false) as checking,
        (select jsonb_agg(jsonb_build_object('key', t.key, 'value', t.value) order by t.key) from build_tags t where t.build_id = last.id) as tags
      from derivations d
      join lateral (
        select b.id, b.ended_at from builds b
        where b.derivation_path = d.path and b.state = 'succeeded'
          and not exists (select 1 from fod_checks f where f.build_id = b.id)
          ${sql.join(tagConditions, sql` `)}
        order by b.ended_at desc limit 1) last on true
      left join lateral (
        select max(f.requested_at) as last_check, bool_or(f.outcome is null) as checking
        from fod_checks f where f.derivation_path = d.path) c on true
      where d.fixed_output ${sql.join(conditions, sql` `)}
      order by coalesce(c.last_check, last.ended_at), d.path
      limit ${limit}`),
  );
  return rows.map((r) => ({ path: r.path, tags: r.tags ?? [], checking: r.checking }));
}

/** `*` matches anything; LIKE's own wildcards are taken literally. */
function namePattern(name: string): string {
  return name.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%');
}

export interface FodCheckQuery {
  buildIds?: string[];
  derivationPaths?: string[];
  outcomes?: FodCheckOutcome[];
  /** Only each derivation's latest check. */
  latestOnly?: boolean;
  limit?: number;
}

/** Checks, newest first. */
export async function listFodChecks(db: Database, q: FodCheckQuery): Promise<FodCheckRecord[]> {
  const limit = Math.min(q.limit && q.limit > 0 ? q.limit : 100, q.buildIds ? MAX_LIMIT : 1000);
  const where: SQL[] = [sql`true`];
  if (q.buildIds) where.push(sql`f.build_id = any(${sql.param(q.buildIds)}::uuid[])`);
  if (q.derivationPaths?.length) where.push(sql`f.derivation_path = any(${sql.param(q.derivationPaths)}::text[])`);
  if (q.outcomes?.length) where.push(sql`coalesce(f.outcome, 'pending') = any(${sql.param(q.outcomes)}::text[])`);
  if (q.latestOnly) {
    where.push(sql`not exists (select 1 from fod_checks n where n.derivation_path = f.derivation_path
      and (n.requested_at, n.build_id) > (f.requested_at, f.build_id))`);
  }
  const rows = rowsOf<{ build_id: string; derivation_path: string; requested_at: string | Date; finished_at: string | Date | null; outcome: string | null; message: string }>(
    await db.execute(sql`
      select f.build_id, f.derivation_path, f.requested_at, f.finished_at, f.outcome, f.message from fod_checks f
      where ${sql.join(where, sql` and `)}
      order by f.requested_at desc, f.build_id desc limit ${limit}`),
  );
  return rows.map((r) => ({
    buildId: r.build_id,
    derivationPath: r.derivation_path,
    requestedAt: new Date(r.requested_at),
    finishedAt: r.finished_at === null ? null : new Date(r.finished_at),
    outcome: (r.outcome ?? 'pending') as FodCheckOutcome,
    message: r.message,
  }));
}
