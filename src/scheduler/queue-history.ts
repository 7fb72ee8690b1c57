// The farm over the last hours, for the dashboard's charts, from timestamps the database
// keeps anyway (no history table): how many builds were scheduled, allocated and started
// at each moment of a grid, how many ended each minute, and how many builds each agent
// held on average over each step. The grid is whole steps since the epoch by the
// database's clock, so every replica answers the same. A build's life is created_at..ended_at and an attempt's
// allocated_at..started_at..ended_at (an attempt left open by a build that ended, ends with
// it); a failed build retried later counts as waiting while it was failed.
import { sql, type SQL } from 'drizzle-orm';
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

/** A counted thing: 'alive' (builds not ended), and per agent 'held' (allocated or started) and 'started'. */
type Series = 'alive' | 'held' | 'started';

/**
 * One pass over the builds and attempts that lived during the period: each start is +1 and
 * each end -1 of its series, summed per grid step (bucket i is (t[i-1], t[i]]; bucket -1
 * is everything up to the period's base, the counts there). `weighted` sums delta times
 * the event's seconds after the base, which gives each step's integral.
 */
function changesPerStep(base: number, step: number, steps: number): SQL {
  return sql`
    with p as (select to_timestamp(${base}) as base),
    b as (select created_at, ended_at from builds, p where ended_at is null or ended_at > p.base),
    a as (
      select a.agent_id, a.allocated_at, a.started_at,
        coalesce(a.ended_at, case when bb.state in ('succeeded', 'failed', 'canceled') then bb.ended_at end) as ended_at
      from build_attempts a join builds bb on bb.id = a.build_id, p
      where a.ended_at is null or a.ended_at > p.base),
    ev as (
      select 'alive' as series, null::uuid as agent_id, created_at as at, 1 as delta from b
      union all select 'alive', null, ended_at, -1 from b where ended_at is not null
      union all select 'held', agent_id, allocated_at, 1 from a
      union all select 'held', agent_id, ended_at, -1 from a where ended_at is not null
      union all select 'started', agent_id, started_at, 1 from a where started_at is not null
      union all select 'started', agent_id, ended_at, -1 from a where started_at is not null and ended_at is not null)
    select ev.series, ev.agent_id,
      case when ev.at <= p.base then -1
        else least(ceil((extract(epoch from ev.at) - extract(epoch from p.base)) / ${step})::int - 1, ${steps + 1}) end as bucket,
      sum(ev.delta) as delta,
      sum(ev.delta * (extract(epoch from ev.at) - extract(epoch from p.base))) as weighted
    from ev, p
    group by 1, 2, 3`;
}

export async function farmHistory(db: Database, minutes = DEFAULT_HISTORY_MINUTES): Promise<FarmHistory> {
  const period = Math.min(Math.max(1, Math.floor(minutes || DEFAULT_HISTORY_MINUTES)), MAX_HISTORY_MINUTES);
  const step = Math.max(60, Math.ceil((period * 60) / POINTS / 60) * 60);
  const steps = Math.ceil((period * 60) / step);
  const [clock] = rowsOf<{ now: Num; base: Num }>(
    await db.execute(sql`select extract(epoch from now()) as now, (floor(extract(epoch from now()) / ${step}) - ${steps} - 1) * ${step} as base`),
  );
  const changes = rowsOf<{ series: Series; agent_id: string | null; bucket: Num; delta: Num; weighted: Num }>(await db.execute(changesPerStep(Number(clock!.base), step, steps)));
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
  // The grid (seconds after the base): whole steps, then now, unless now is on the grid.
  const base = Number(clock!.base);
  const now = Number(clock!.now) - base;
  const times = Array.from({ length: steps + 1 }, (_, i) => (i + 1) * step);
  if (now > times[times.length - 1]!) times.push(now);
  const sweeps = new Map<string, Sweep>();
  for (const c of changes) {
    const key = `${c.series} ${c.agent_id ?? ''}`;
    let sweep = sweeps.get(key);
    if (!sweep) sweeps.set(key, (sweep = { series: c.series, agentId: c.agent_id, before: 0, delta: times.map(() => 0), weighted: times.map(() => 0) }));
    const bucket = Math.min(Number(c.bucket), times.length - 1);
    if (bucket < 0) sweep.before += Number(c.delta);
    else {
      sweep.delta[bucket]! += Number(c.delta);
      sweep.weighted[bucket]! += Number(c.weighted);
    }
  }
  const all = [...sweeps.values()];
  const total = (series: Series) => sumAt(all.filter((s) => s.series === series).map((s) => levels(s, times)), times.length);
  const [alive, held, started] = [total('alive'), total('held'), total('started')];
  const queueDepth = times.map((t, i) => ({
    at: new Date((base + t) * 1000),
    scheduled: Math.max(0, alive[i]! - held[i]!),
    allocated: Math.max(0, held[i]! - started[i]!),
    started: started[i]!,
  }));
  const heldByAgent = all.filter((s) => s.series === 'held' && s.agentId !== null);
  const names = await agentNames(db, heldByAgent.map((s) => s.agentId!));
  const agentSlots = heldByAgent
    .map((s) => ({ agentId: s.agentId!, agentName: names.get(s.agentId!) ?? '', inUse: averages(s, times) }))
    .filter((s) => s.inUse.some((v) => v > 0));
  return {
    stepSeconds: step,
    queueDepth,
    finished: finished.map((r) => ({ minute: dateOf(r.minute), succeeded: Number(r.succeeded), failed: Number(r.failed), canceled: Number(r.canceled) })),
    agentSlots: agentSlots.sort((x, y) => x.agentName.localeCompare(y.agentName) || x.agentId.localeCompare(y.agentId)),
  };
}

interface Sweep {
  series: Series;
  agentId: string | null;
  /** The count at the base. */
  before: number;
  delta: number[];
  weighted: number[];
}

/** The count at each point: the base's count and every change up to the point. */
function levels(s: Sweep, times: number[]): number[] {
  let level = s.before;
  return times.map((_, i) => (level += s.delta[i]!));
}

/** The average count over each step (t[i-1], t[i]]: its integral over the step's length. */
function averages(s: Sweep, times: number[]): number[] {
  let level = s.before;
  return times.map((t, i) => {
    const since = i ? times[i - 1]! : 0;
    const integral = level * (t - since) + s.delta[i]! * t - s.weighted[i]!;
    level += s.delta[i]!;
    return t > since ? Math.max(0, integral / (t - since)) : level;
  });
}

function sumAt(series: number[][], length: number): number[] {
  return Array.from({ length }, (_, i) => series.reduce((n, s) => n + s[i]!, 0));
}

async function agentNames(db: Database, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = rowsOf<{ id: string; name: string }>(await db.execute(sql`select id, name from agents where id = any(${sql.param(ids)}::uuid[])`));
  return new Map(rows.map((r) => [r.id, r.name]));
}
