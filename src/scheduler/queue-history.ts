// The farm over the last hours, for the dashboard's charts, from timestamps the database
// keeps anyway (no history table): how many builds were scheduled, allocated and started
// at each moment of a grid, how many ended each minute, and how many builds each agent
// held on average over each step. The grid is whole steps since the epoch by the database's clock, so every replica
// answers the same. A build's life is created_at..ended_at and an attempt's
// allocated_at..started_at..ended_at (an attempt left open by a build that ended, ends with
// it); a failed build retried later counts as waiting while it was failed.
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { dateOf, rowsOf } from '../db/rows.js';

export interface QueueDepthPoint {
  at: Date;
  scheduled: number;
  allocated: number;
  started: number;
}

export interface FinishedInMinute {
  minute: Date;
  succeeded: number;
  failed: number;
  canceled: number;
}

export interface AgentSlotsInUse {
  agentId: string;
  agentName: string;
  /** One per queue depth point: the builds held on average over the step that ends there. */
  inUse: number[];
}

export interface FarmHistory {
  stepSeconds: number;
  queueDepth: QueueDepthPoint[];
  finished: FinishedInMinute[];
  agentSlots: AgentSlotsInUse[];
}

export const DEFAULT_HISTORY_MINUTES = 180;
export const MAX_HISTORY_MINUTES = 1440;
/** About this many points on the grid, whatever the period. */
const POINTS = 120;

type Num = number | string;

export async function farmHistory(db: Database, minutes = DEFAULT_HISTORY_MINUTES): Promise<FarmHistory> {
  const period = Math.min(Math.max(1, Math.floor(minutes || DEFAULT_HISTORY_MINUTES)), MAX_HISTORY_MINUTES);
  const step = Math.max(60, Math.ceil((period * 60) / POINTS / 60) * 60);
  const steps = Math.ceil((period * 60) / step);
  // The grid's points (i from 0, oldest first), then now; the builds and attempts that
  // lived during the period, each attempt with where it ends.
  const ctes = sql`
    with grid as (
      select to_timestamp(g * ${step}) as at
      from generate_series(floor(extract(epoch from now()) / ${step})::bigint - ${steps}, floor(extract(epoch from now()) / ${step})::bigint) g
      where to_timestamp(g * ${step}) < now()
      union all select now()),
    t as (select at, (row_number() over (order by at)) - 1 as i from grid),
    b as (
      select created_at, ended_at from builds
      where ended_at is null or ended_at > now() - make_interval(secs => ${(steps + 1) * step})),
    a as (
      select a.agent_id, a.allocated_at, a.started_at,
        coalesce(a.ended_at, case when b.state in ('succeeded', 'failed', 'canceled') then b.ended_at end) as ended_at
      from build_attempts a join builds b on b.id = a.build_id
      where a.ended_at is null or a.ended_at > now() - make_interval(secs => ${(steps + 1) * step}))`;
  const depth = rowsOf<{ at: Date | string; alive: Num; allocated: Num; started: Num }>(
    await db.execute(sql`${ctes}
      select t.at,
        (select count(*) from b where b.created_at <= t.at and (b.ended_at is null or b.ended_at > t.at)) as alive,
        (select count(*) from a where a.allocated_at <= t.at and (a.started_at is null or a.started_at > t.at) and (a.ended_at is null or a.ended_at > t.at)) as allocated,
        (select count(*) from a where a.started_at <= t.at and (a.ended_at is null or a.ended_at > t.at)) as started
      from t order by t.i`),
  );
  // Builds held in the step that ends at each point: the seconds of overlap with it.
  const held = rowsOf<{ agent_id: string; name: string; i: Num; busy: Num; step: Num }>(
    await db.execute(sql`${ctes},
      steps as (select at, i, coalesce(lag(at) over (order by i), at - make_interval(secs => ${step})) as since from t)
      select a.agent_id, coalesce(ag.name, '') as name, s.i,
        sum(extract(epoch from least(coalesce(a.ended_at, now()), s.at) - greatest(a.allocated_at, s.since))) as busy,
        extract(epoch from s.at - s.since) as step
      from steps s join a on a.allocated_at < s.at and (a.ended_at is null or a.ended_at > s.since)
      left join agents ag on ag.id = a.agent_id
      group by a.agent_id, ag.name, s.i, s.at, s.since`),
  );
  const finished = rowsOf<{ minute: Date | string; succeeded: Num; failed: Num; canceled: Num }>(
    await db.execute(sql`
      select date_trunc('minute', ended_at) as minute,
        count(*) filter (where state = 'succeeded') as succeeded,
        count(*) filter (where state = 'failed') as failed,
        count(*) filter (where state = 'canceled') as canceled
      from builds
      where state in ('succeeded', 'failed', 'canceled') and ended_at > now() - make_interval(secs => ${period * 60})
      group by 1 order by 1`),
  );
  const queueDepth = depth.map((r) => {
    const allocated = Number(r.allocated);
    const started = Number(r.started);
    return { at: dateOf(r.at), scheduled: Math.max(0, Number(r.alive) - allocated - started), allocated, started };
  });
  const agents = new Map<string, AgentSlotsInUse>();
  for (const r of held) {
    let series = agents.get(r.agent_id);
    if (!series) agents.set(r.agent_id, (series = { agentId: r.agent_id, agentName: r.name, inUse: queueDepth.map(() => 0) }));
    series.inUse[Number(r.i)] = Number(r.step) > 0 ? Number(r.busy) / Number(r.step) : 0;
  }
  return {
    stepSeconds: step,
    queueDepth,
    finished: finished.map((r) => ({ minute: dateOf(r.minute), succeeded: Number(r.succeeded), failed: Number(r.failed), canceled: Number(r.canceled) })),
    agentSlots: [...agents.values()].sort((x, y) => x.agentName.localeCompare(y.agentName) || x.agentId.localeCompare(y.agentId)),
  };
}
