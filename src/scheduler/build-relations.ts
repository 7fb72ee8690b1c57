// The builds next to a build, for the dashboard's links: its derivation's inputs and the
// derivations that take it as an input (dependants), each with its latest build. Both
// walk derivation_inputs by index (its primary key, derivation_inputs_input) and find a
// derivation's latest build through builds_derivation.
import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import type { BuildState } from '../db/schema.js';
import { getBuild } from './build-queries.js';

export interface RelatedBuild {
  derivationPath: string;
  /** The derivation's latest build; null when it has none. */
  buildId: string | null;
  state: BuildState | null;
}

export interface BuildRelations {
  inputs: RelatedBuild[];
  dependants: RelatedBuild[];
  dependantCount: number;
}

export const DEFAULT_DEPENDANTS = 100;
export const MAX_DEPENDANTS = 1000;

type Row = { derivation_path: string; build_id: string | null; state: BuildState | null };

/** Joins the latest build (lb) of the derivation at `path`. */
const latestBuild = (path: SQL) => sql`left join lateral (
    select b.id, b.state from builds b where b.derivation_path = ${path} order by b.seq desc limit 1) lb on true`;

export async function buildRelations(db: Database, buildId: string, dependantsLimit?: number): Promise<BuildRelations> {
  const build = await getBuild(db, buildId);
  const limit = dependantsLimit && dependantsLimit > 0 ? Math.min(dependantsLimit, MAX_DEPENDANTS) : DEFAULT_DEPENDANTS;
  const inputs = rowsOf<Row>(
    await db.execute(sql`
      select i.input_path as derivation_path, lb.id as build_id, lb.state
      from (select distinct input_path from derivation_inputs where derivation_path = ${build.derivationPath}) i
      ${latestBuild(sql`i.input_path`)}
      order by i.input_path`),
  );
  const dependants = rowsOf<Row>(
    await db.execute(sql`
      select d.derivation_path, lb.id as build_id, lb.state
      from (select distinct derivation_path from derivation_inputs where input_path = ${build.derivationPath}
            order by derivation_path limit ${limit}) d
      ${latestBuild(sql`d.derivation_path`)}
      order by d.derivation_path`),
  );
  const [counted] = rowsOf<{ n: number | string }>(
    await db.execute(sql`select count(distinct derivation_path) as n from derivation_inputs where input_path = ${build.derivationPath}`),
  );
  const related = (r: Row): RelatedBuild => ({ derivationPath: r.derivation_path, buildId: r.build_id, state: r.state });
  return { inputs: inputs.map(related), dependants: dependants.map(related), dependantCount: Number(counted?.n ?? 0) };
}
