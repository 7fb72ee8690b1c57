// The hook queue in SQL, one function per statement: fanning new events out into one
// delivery per hook, claiming deliveries (FOR UPDATE SKIP LOCKED, so replicas never run
// one delivery at once), and recording how each ended. At least once: a delivery whose
// lease ran out while running is claimed again.
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { storableText } from '../db/storable-text.js';
import type { HookEvent } from './hook.js';

/** Events read per fan-out statement. */
export const FAN_OUT_BATCH = 1000;

/**
 * Turns events no hook was handed yet into deliveries for the hooks that take their type
 * (`subscriptions`: hook name → event types, '*' for all). Returns how many events it read.
 * The batch's events are marked through the primary key (`= any(array(…))`): joined to
 * the batch, which the planner sizes by its limit, every event ever written was hashed.
 */
export async function fanOut(db: Database, subscriptions: Map<string, readonly string[]>): Promise<number> {
  const hooks = [...subscriptions.keys()];
  const types = hooks.map((h) => `{${subscriptions.get(h)!.map((t) => JSON.stringify(t)).join(',')}}`);
  const rows = rowsOf<{ n: number }>(
    await db.execute(sql`
      with batch as (
        select id, type from events where processed_at is null order by id limit ${FAN_OUT_BATCH}
        for update skip locked
      ),
      delivered as (
        insert into hook_deliveries (hook, event_id)
        select h.hook, b.id
        from batch b
        join unnest(${sql.param(hooks)}::text[], ${sql.param(types)}::text[]) as h(hook, types)
          on b.type = any(h.types::text[]) or '*' = any(h.types::text[])
        on conflict do nothing
      ),
      marked as (update events set processed_at = now() where id = any(array(select id from batch)) returning id)
      select count(*)::int as n from marked`),
  );
  return Number(rows[0]?.n ?? 0);
}

interface DeliveryRow {
  event_id: number;
  attempts: number;
  type: string;
  build_id: string | null;
  agent_id: string | null;
  payload: Record<string, unknown> | string;
  created_at: string | Date;
}

/** Claims up to `limit` deliveries of the hook that are due, leased for `leaseMs`. */
export async function claimDeliveries(db: Database, hook: string, limit: number, leaseMs: number): Promise<HookEvent[]> {
  if (limit <= 0) return [];
  const rows = rowsOf<DeliveryRow>(
    await db.execute(sql`
      with due as (
        select hook, event_id from hook_deliveries
        where hook = ${hook}
          and ((state = 'pending' and run_after <= now()) or (state = 'running' and lease_until < now()))
        order by run_after, event_id
        limit ${limit}
        for update skip locked
      ),
      claimed as (
        update hook_deliveries d
        set state = 'running', attempts = d.attempts + 1, lease_until = now() + make_interval(secs => ${leaseMs / 1000}), updated_at = now()
        from due where d.hook = due.hook and d.event_id = due.event_id
        returning d.event_id, d.attempts
      )
      select c.event_id, c.attempts, e.type, e.build_id, e.agent_id, e.payload, e.created_at
      from claimed c join events e on e.id = c.event_id
      order by c.event_id`),
  );
  return rows.map((r) => ({
    id: Number(r.event_id),
    type: r.type,
    buildId: r.build_id,
    agentId: r.agent_id,
    payload: typeof r.payload === 'string' ? (JSON.parse(r.payload) as Record<string, unknown>) : r.payload,
    createdAt: new Date(r.created_at).toISOString(),
    attempt: Number(r.attempts),
  }));
}

/** Extends a running delivery's lease: its handler is still at work here. */
export async function renewDelivery(db: Database, hook: string, eventId: number, leaseMs: number): Promise<void> {
  await db.execute(sql`
    update hook_deliveries set lease_until = now() + make_interval(secs => ${leaseMs / 1000})
    where hook = ${hook} and event_id = ${eventId} and state = 'running'`);
}

export async function deliveryDone(db: Database, hook: string, eventId: number): Promise<void> {
  await db.execute(sql`
    update hook_deliveries set state = 'done', lease_until = null, last_error = '', updated_at = now()
    where hook = ${hook} and event_id = ${eventId}`);
}

/** A failed delivery: tried again after `retryInMs`, or parked when `park`. */
export async function deliveryFailed(db: Database, hook: string, eventId: number, error: string, outcome: { park: true } | { park: false; retryInMs: number }): Promise<void> {
  await db.execute(sql`
    update hook_deliveries
    set state = ${outcome.park ? 'parked' : 'pending'}, lease_until = null, last_error = ${storableText(error, 8000)}, updated_at = now(),
        run_after = now() + make_interval(secs => ${outcome.park ? 0 : outcome.retryInMs / 1000})
    where hook = ${hook} and event_id = ${eventId}`);
}

/** An operator's retry of a parked (or failing) delivery: due now, with its attempts counted afresh. */
export async function retryDeliveries(db: Database, eventId: number, hook?: string): Promise<number> {
  const rows = rowsOf<{ hook: string }>(
    await db.execute(sql`
      update hook_deliveries set state = 'pending', attempts = 0, run_after = now(), updated_at = now()
      where event_id = ${eventId} and state in ('parked', 'pending') ${hook ? sql`and hook = ${hook}` : sql``}
      returning hook`),
  );
  return rows.length;
}
