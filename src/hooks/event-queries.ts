// Reading events for operators: newest first, filtered, paged by id, each with its
// deliveries to the hooks.
import { and, desc, eq, exists, inArray, lt, type SQL } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { events, hookDeliveries, type DeliveryState } from '../db/schema.js';
import { invalidArgument } from '../errors.js';
import { isUuid } from '../uuid.js';

export interface EventRecord {
  id: number;
  type: string;
  buildId: string | null;
  agentId: string | null;
  payload: unknown;
  createdAt: Date;
  deliveries: { hook: string; state: DeliveryState; attempts: number; lastError: string; runAfter: Date }[];
}

const STATES: DeliveryState[] = ['pending', 'running', 'done', 'parked'];

export async function listEvents(
  db: Database,
  filter: { types?: string[]; buildId?: string; deliveryStates?: string[] },
  page: { size?: number; token?: string },
): Promise<{ events: EventRecord[]; nextToken: string }> {
  const size = page.size && page.size > 0 ? Math.min(page.size, 1000) : 100;
  const where: SQL[] = [];
  if (filter.types?.length) where.push(inArray(events.type, filter.types));
  if (filter.buildId) {
    if (!isUuid(filter.buildId)) throw invalidArgument(`build_id ${JSON.stringify(filter.buildId)} is not a UUID`);
    where.push(eq(events.buildId, filter.buildId));
  }
  if (filter.deliveryStates?.length) {
    const bad = filter.deliveryStates.find((s) => !(STATES as string[]).includes(s));
    if (bad !== undefined) throw invalidArgument(`delivery state ${JSON.stringify(bad)} is not one of ${STATES.join(', ')}`);
    where.push(
      exists(
        db
          .select({ one: hookDeliveries.eventId })
          .from(hookDeliveries)
          .where(and(eq(hookDeliveries.eventId, events.id), inArray(hookDeliveries.state, filter.deliveryStates as DeliveryState[]))),
      ),
    );
  }
  if (page.token) {
    if (!/^\d{1,15}$/.test(page.token)) throw invalidArgument('page_token is not one this coordinator handed out');
    where.push(lt(events.id, Number(page.token)));
  }
  const rows = await db.select().from(events).where(and(...where)).orderBy(desc(events.id)).limit(size + 1);
  const pageRows = rows.slice(0, size);
  const deliveries = pageRows.length
    ? await db.select().from(hookDeliveries).where(inArray(hookDeliveries.eventId, pageRows.map((r) => r.id)))
    : [];
  return {
    events: pageRows.map((e) => ({
      id: e.id,
      type: e.type,
      buildId: e.buildId,
      agentId: e.agentId,
      payload: e.payload,
      createdAt: e.createdAt,
      deliveries: deliveries
        .filter((d) => d.eventId === e.id)
        .sort((a, b) => (a.hook < b.hook ? -1 : 1))
        .map((d) => ({ hook: d.hook, state: d.state, attempts: d.attempts, lastError: d.lastError, runAfter: d.runAfter })),
    })),
    nextToken: rows.length > size ? String(pageRows[pageRows.length - 1]!.id) : '',
  };
}
