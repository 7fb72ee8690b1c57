// What an agent may upload: outputs and logs only of builds allocated to it and not
// finished yet.
import { eq, sql } from 'drizzle-orm';
import { Batcher, batcherPer } from '../batcher.js';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { builds } from '../db/schema.js';
import { KilnError, notFound } from '../errors.js';
import { isUuid } from '../uuid.js';

export interface HeldOutput {
  name: string;
  path: string;
  derivationPath: string;
  /** The build's current attempt, whose upload this is. */
  attempt: number;
  /** The path is in the cache already (built before), or this attempt uploaded it already. */
  stored: boolean;
}

/** A database or a transaction in progress. */
export type Queryable = Database | Parameters<Parameters<Database['transaction']>[0]>[0];

/**
 * The build, if it is allocated to the agent (and, with `unfinished`, not finished yet);
 * else why not, as an error. `lock` takes its row lock inside a transaction.
 */
export async function buildOfAgent(
  db: Queryable,
  agentId: string,
  buildId: string,
  opts: { lock?: boolean; unfinished?: boolean; refusal?: string } = {},
) {
  if (!isUuid(buildId)) throw new KilnError('invalid_argument', `build id ${JSON.stringify(buildId)} is not a UUID`);
  const query = db.select().from(builds).where(eq(builds.id, buildId));
  const [build] = opts.lock ? await query.for('update') : await query;
  return checkOfAgent(build, agentId, buildId, opts);
}

/** The checks of buildOfAgent on a build row read (undefined: there is none). */
function checkOfAgent<B extends { agentId: string | null; state: string }>(
  build: B | undefined,
  agentId: string,
  buildId: string,
  opts: { unfinished?: boolean; refusal?: string },
): B {
  if (!build) throw notFound(`no build with id ${buildId}`);
  const finished = build.state !== 'allocated' && build.state !== 'started';
  if (build.agentId !== agentId || (opts.unfinished && finished)) {
    throw new KilnError('permission_denied', `build ${buildId} is not allocated to agent ${agentId}${opts.refusal ?? ''}`);
  }
  return build;
}

const UPLOAD_REFUSAL = { unfinished: true, refusal: '; it cannot upload for it' };

/** The build, if the agent may upload for it: allocated to it and unfinished. */
export function heldBuild(db: Database, agentId: string, buildId: string) {
  return buildOfAgent(db, agentId, buildId, UPLOAD_REFUSAL);
}

/**
 * The output of a build the agent may upload for. Every upload asks, so the build and the
 * output are read in one query, and uploads starting together share it (batcher.ts).
 */
export async function outputOfHeldBuild(db: Database, agentId: string, buildId: string, outputName: string): Promise<HeldOutput> {
  if (!isUuid(buildId)) throw new KilnError('invalid_argument', `build id ${JSON.stringify(buildId)} is not a UUID`);
  const row = await outputLookups(db).call({ buildId, outputName });
  const build = checkOfAgent(row, agentId, buildId, UPLOAD_REFUSAL);
  if (build.name === null || build.path === null) {
    throw new KilnError('invalid_argument', `the derivation of build ${buildId} has no output ${JSON.stringify(outputName)}`);
  }
  return { name: build.name, path: build.path, derivationPath: build.derivationPath, attempt: build.attempt, stored: build.stored };
}

interface OutputRow {
  agentId: string | null;
  state: string;
  derivationPath: string;
  attempt: number;
  name: string | null;
  path: string | null;
  stored: boolean;
}

/** Builds (undefined if none) with the named output of each, in the order asked. */
const outputLookups = batcherPer(
  (db: Database) =>
    new Batcher(async (asked: { buildId: string; outputName: string }[]): Promise<(OutputRow | undefined)[]> => {
      const rows = rowsOf<{ n: number; agent_id: string | null; state: string; derivation_path: string; attempt: number; name: string | null; path: string | null; stored: boolean }>(
        await db.execute(sql`
          select v.n, b.agent_id, b.state, b.derivation_path, b.attempt, o.name, o.path,
                 -- A check build's outputs are its own to upload, whatever the cache serves.
                 (b.check_of is null and exists (select 1 from store_paths s where s.path = o.path))
                   or exists (select 1 from pending_outputs p where p.build_id = b.id and p.attempt = b.attempt and p.name = o.name) as stored
          from unnest(${sql.param(asked.map((a) => a.buildId))}::uuid[], ${sql.param(asked.map((a) => a.outputName))}::text[]) with ordinality as v(id, name, n)
          join builds b on b.id = v.id
          left join derivation_outputs o on o.derivation_path = b.derivation_path and o.name = v.name`),
      );
      const found = new Map(rows.map((r) => [Number(r.n), r]));
      return asked.map((_, i) => {
        const r = found.get(i + 1);
        return r && { agentId: r.agent_id, state: r.state, derivationPath: r.derivation_path, attempt: Number(r.attempt), name: r.name, path: r.path, stored: r.stored };
      });
    }),
);
