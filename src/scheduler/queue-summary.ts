// The queue at a glance, for the dashboard and /metrics: unfinished builds by state and
// system (the builds_unfinished index), the ready ones with the oldest's submission
// time, and the hook events not yet processed. Each is one statement over a partial
// index, so a scrape stays cheap however long the history grows.
import { and, count, eq, inArray, isNull, lte, min, or, sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { builds, events, hookDeliveries, type BuildState, type DeliveryState } from '../db/schema.js';

export const UNFINISHED: BuildState[] = ['scheduled', 'allocated', 'started'];

export interface StateCount {
  state: BuildState;
  system: string;
  count: number;
}

export interface ReadyCount {
  system: string;
  count: number;
  oldestCreatedAt: Date;
}

export interface HookBacklog {
  pending: number;
  oldestCreatedAt: Date | null;
}

export async function unfinishedByStateAndSystem(db: Database): Promise<StateCount[]> {
  const rows = await db
    .select({ state: builds.state, system: builds.system, count: count() })
    .from(builds)
    .where(inArray(builds.state, UNFINISHED))
    .groupBy(builds.state, builds.system);
  return rows.map((r) => ({ state: r.state, system: r.system, count: Number(r.count) }));
}

/** Builds an agent could take now: scheduled, every input in the cache, past any backoff. */
export async function readyBySystem(db: Database): Promise<ReadyCount[]> {
  const rows = await db
    .select({ system: builds.system, count: count(), oldest: min(builds.createdAt) })
    .from(builds)
    .where(and(eq(builds.state, 'scheduled'), eq(builds.waiting, 0), or(isNull(builds.notBefore), lte(builds.notBefore, sql`now()`))))
    .groupBy(builds.system);
  return rows.map((r) => ({ system: r.system, count: Number(r.count), oldestCreatedAt: toDate(r.oldest) }));
}

/** Deliveries not done, by hook and state: what the hooks still owe (pending, running) and what they gave up on (parked). */
export async function openHookDeliveries(db: Database): Promise<{ hook: string; state: DeliveryState; count: number }[]> {
  const rows = await db
    .select({ hook: hookDeliveries.hook, state: hookDeliveries.state, count: count() })
    .from(hookDeliveries)
    .where(inArray(hookDeliveries.state, ['pending', 'running', 'parked']))
    .groupBy(hookDeliveries.hook, hookDeliveries.state);
  return rows.map((r) => ({ hook: r.hook, state: r.state, count: Number(r.count) }));
}

/** Events written with a state change that the hook runner has not fanned out into deliveries yet. */
export async function hookBacklog(db: Database): Promise<HookBacklog> {
  const [row] = await db.select({ pending: count(), oldest: min(events.createdAt) }).from(events).where(isNull(events.processedAt));
  return { pending: Number(row?.pending ?? 0), oldestCreatedAt: row?.oldest ? toDate(row.oldest) : null };
}

/** min() of a timestamp comes back as a string from one driver and a Date from the other. */
function toDate(value: Date | string | null): Date {
  return value instanceof Date ? value : new Date(value ?? 0);
}
