// The second allocation policy: fair share by a tag. Builds are grouped by the value of
// one tag key (say `owner`); an agent's free slots go to the group with the fewest
// builds running now, and within a group by derived priority. One busy group cannot
// starve the others however many builds it queues.
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { lockedCandidates, runClaim, type AllocationPolicy } from './allocation.js';

interface Candidate {
  id: string;
  derived_priority: number;
  seq: number;
  share: string | null;
}

/** How many candidates per free slot are looked at, so that every group has a chance to appear. */
const POOL_FACTOR = 8;

export function fairShareByTag(key: string): AllocationPolicy {
  return {
    name: `fair-share:${key}`,
    async claim(db, agent, limit, opts) {
      if (limit <= 0 || agent.systems.length === 0) return [];
      return db.transaction(async (tx) => {
        const shareOf = sql`, (select t.value from build_tags t where t.build_id = b.id and t.key = ${key}) as share, b.derived_priority, b.seq`;
        const pool = rowsOf<Candidate>(await tx.execute(lockedCandidates(agent, limit * POOL_FACTOR, shareOf)));
        const running = rowsOf<{ share: string | null; n: number }>(
          await tx.execute(sql`
            select t.value as share, count(*)::int as n
            from builds b left join build_tags t on t.build_id = b.id and t.key = ${key}
            where b.state in ('allocated', 'started')
            group by t.value`),
        );
        const picked = pickFairly(pool.map((c) => ({ id: c.id, share: c.share ?? '', priority: Number(c.derived_priority), seq: Number(c.seq) })),
          new Map(running.map((r) => [r.share ?? '', Number(r.n)])), limit);
        return runClaim(tx as unknown as Database, agent.agentId, sql`select unnest(${sql.param(picked)}::uuid[]) as id`, opts);
      });
    },
  };
}

/**
 * The pure choice: slot by slot, the group with the fewest running (counting what this
 * pick gave it), ties to the group whose best build has the higher priority; within
 * the group the highest priority, then the oldest.
 */
export function pickFairly(
  candidates: { id: string; share: string; priority: number; seq: number }[],
  running: ReadonlyMap<string, number>,
  limit: number,
): string[] {
  const groups = new Map<string, typeof candidates>();
  for (const c of [...candidates].sort((a, b) => b.priority - a.priority || a.seq - b.seq)) {
    groups.set(c.share, [...(groups.get(c.share) ?? []), c]);
  }
  const load = new Map([...groups.keys()].map((g) => [g, running.get(g) ?? 0]));
  const picked: string[] = [];
  while (picked.length < limit) {
    let best: string | undefined;
    for (const [g, queue] of groups) {
      if (queue.length === 0) continue;
      if (best === undefined) {
        best = g;
        continue;
      }
      const a = load.get(g)!;
      const b = load.get(best)!;
      if (a < b || (a === b && queue[0]!.priority > groups.get(best)![0]!.priority)) best = g;
    }
    if (best === undefined) break;
    picked.push(groups.get(best)!.shift()!.id);
    load.set(best, load.get(best)! + 1);
  }
  return picked;
}
