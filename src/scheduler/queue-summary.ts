// The queue at a glance, for the dashboard and /metrics: unfinished builds by state and
// system (the builds_unfinished index), the ready ones with the oldest's submission
// time, and the hook events not yet processed. Each is one statement over a partial
// index, so a scrape stays cheap however long the history grows.
import { count, inArray, isNull, min, sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { dateOf, rowsOf } from '../db/rows.js';
import { builds, events, hookDeliveries, type BuildState, type DeliveryState } from '../db/schema.js';
import { offersWhatItNeeds, type AgentCapabilities } from './allocation.js';

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
  /** Of count, how many an agent of those asked about offers what they need. */
  matchingConnected: number;
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

/** What an agent offers, as matching sees it (systems, tags, features). */
export type AgentOffer = Pick<AgentCapabilities, 'systems' | 'tags' | 'features'>;

/**
 * Builds an agent could take now: scheduled, every input in the cache, past any backoff;
 * with how many of them one of `agents` offers what they need (tags, features; exclusions
 * of single agents aside). Agents alike are asked about once.
 */
export async function readyBySystem(db: Database, agents: AgentOffer[] = []): Promise<ReadyCount[]> {
  const offers = [...new Map(agents.filter((a) => a.systems.length > 0).map((a) => [JSON.stringify([[...a.systems].sort(), a.tags, a.features]), a])).values()];
  const matching = offers.length
    ? sql`count(*) filter (where ${sql.join(
        offers.map((a) => sql`(b.system = any(${sql.param(a.systems)}::text[]) and ${offersWhatItNeeds(a)})`),
        sql` or `,
      )})`
    : sql`0`;
  const rows = rowsOf<{ system: string; count: number | string; oldest: Date | string; matching: number | string }>(
    await db.execute(sql`
      select b.system, count(*) as count, min(b.created_at) as oldest, ${matching} as matching
      from builds b
      where b.state = 'scheduled' and b.waiting = 0 and (b.not_before is null or b.not_before <= now())
      group by b.system
      order by b.system`),
  );
  return rows.map((r) => ({ system: r.system, count: Number(r.count), oldestCreatedAt: dateOf(r.oldest), matchingConnected: Number(r.matching) }));
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
  return { pending: Number(row?.pending ?? 0), oldestCreatedAt: row?.oldest ? dateOf(row.oldest) : null };
}
