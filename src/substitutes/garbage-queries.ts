// Garbage collection in SQL, one function per statement. Every statement starts from the
// same definition of what is kept, so a path is kept or removed by one rule whatever the
// statement: the outputs of the builds a retention rule keeps, whatever unfinished builds
// still need (their .drv, their outputs, their input derivations' outputs, their
// sources), and the closure of all that through the references of stored paths.
import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { keptSince, type RetentionRules } from './retention.js';

type Executor = Pick<Database, 'execute'>;

/** `with recursive … kept(path)`: the paths the rules keep, for a statement to go on from. */
function withKept(rules: RetentionRules, now: Date): SQL {
  const since = keptSince(rules, now);
  const tags = rules.tags.map((t) => `${t.key}=${t.value}`);
  return sql`
    with recursive
    unfinished as (
      select id, derivation_path from builds where state in ('scheduled', 'allocated', 'started')
    ),
    succeeded as (
      select b.id, b.derivation_path, coalesce(b.ended_at, b.updated_at) as ended,
             row_number() over (partition by d.name order by coalesce(b.ended_at, b.updated_at) desc, b.seq desc) as newest
      from builds b join derivations d on d.path = b.derivation_path
      -- A reproducibility check's build serves nothing: it is no generation of its own.
      where b.state = 'succeeded' and b.check_of is null
    ),
    kept_builds as (
      select s.derivation_path from succeeded s
      where s.newest <= ${rules.lastSuccessfulPerName}
         or s.ended >= ${since?.toISOString() ?? null}::timestamptz
         or exists (select 1 from build_tags t where t.build_id = s.id and t.key || '=' || t.value = any(${sql.param(tags)}::text[]))
    ),
    roots(path) as (
      select o.path from kept_builds k join derivation_outputs o on o.derivation_path = k.derivation_path
      union
      select u.derivation_path from unfinished u
      union
      select o.path from unfinished u join derivation_outputs o on o.derivation_path = u.derivation_path
      union
      select o.path from unfinished u
      join derivation_inputs i on i.derivation_path = u.derivation_path
      join derivation_outputs o on o.derivation_path = i.input_path and o.name = i.output_name
      union
      select s.path from unfinished u join derivation_sources s on s.derivation_path = u.derivation_path
    ),
    kept(path) as (
      select path from roots
      union
      select r.ref from kept k join store_paths s on s.path = k.path cross join lateral unnest(s.references) as r(ref)
    ),
    doomed as (
      select s.path from store_paths s where not exists (select 1 from kept k where k.path = s.path)
    )`;
}

export interface RemovedPath {
  path: string;
  /** Its NAR files: the uploaded one, the other compressions, and its reproducibility checks' results. */
  files: { fileName: string; fileSize: number }[];
}

/** Deletes the rows of every stored path no rule keeps (its nar_files rows with it); returns them. Run holding the cache lock exclusively. */
export async function deleteUnkept(tx: Executor, rules: RetentionRules, now: Date): Promise<RemovedPath[]> {
  const rows = rowsOf<{ path: string; file_name: string; file_size: number | string }>(
    await tx.execute(sql`
      ${withKept(rules, now)},
      gone_files as (
        delete from nar_files f using doomed d where f.path = d.path returning f.path, f.file_name, f.file_size
      ),
      gone as (
        delete from store_paths s using doomed d where s.path = d.path returning s.path, s.file_name, s.file_size
      ),
      -- A reproducibility check's results go with the output they are results of.
      gone_checks as (
        delete from check_outputs c using doomed d where c.path = d.path returning c.path, c.file_name, c.file_size
      )
      select path, file_name, file_size from gone
      union all
      select path, file_name, file_size from gone_files
      union all
      select path, file_name, file_size from gone_checks`),
  );
  return groupByPath(rows);
}

/** What deleteUnkept would delete now (a dry run), with the files that no kept row names. */
export async function findUnkept(db: Executor, rules: RetentionRules, now: Date): Promise<{ paths: RemovedPath[]; freedFiles: Set<string> }> {
  const rows = rowsOf<{ path: string; file_name: string; file_size: number | string; shared: boolean }>(
    await db.execute(sql`
      ${withKept(rules, now)},
      files as (
        select s.path, s.file_name, s.file_size from store_paths s join doomed d on d.path = s.path
        union all
        select f.path, f.file_name, f.file_size from nar_files f join doomed d on d.path = f.path
        union all
        select c.path, c.file_name, c.file_size from check_outputs c join doomed d on d.path = c.path
      )
      select f.path, f.file_name, f.file_size,
        exists (select 1 from store_paths s where s.file_name = f.file_name and s.path not in (select path from doomed))
        or exists (select 1 from nar_files n where n.file_name = f.file_name and n.path not in (select path from doomed))
        or exists (select 1 from check_outputs c where c.file_name = f.file_name and c.path not in (select path from doomed)) as shared
      from files f`),
  );
  return { paths: groupByPath(rows), freedFiles: new Set(rows.filter((r) => !r.shared).map((r) => r.file_name)) };
}

/** Of these file names, those no stored path's (or pending output's, or check result's) row names (any more). Run holding the cache lock exclusively, right before unlinking them. */
export async function unreferencedFiles(tx: Executor, fileNames: string[]): Promise<string[]> {
  if (fileNames.length === 0) return [];
  const rows = rowsOf<{ name: string }>(
    await tx.execute(sql`
      select n.name from unnest(${sql.param(fileNames)}::text[]) as n(name)
      where not exists (select 1 from store_paths s where s.file_name = n.name)
        and not exists (select 1 from nar_files f where f.file_name = n.name)
        and not exists (select 1 from pending_outputs p where p.file_name = n.name)
        -- A reproducibility check's result (scheduler/reproducibility.ts) is kept with its row.
        and not exists (select 1 from check_outputs c where c.file_name = n.name)`),
  );
  return rows.map((r) => r.name);
}

/**
 * Drops pending outputs whose attempt is over (its build is no longer held at that
 * attempt): left by a coordinator that died between an attempt's end and their removal.
 * Returns their files, which may now be unreferenced.
 */
export async function deleteStalePending(tx: Executor): Promise<{ fileName: string; fileSize: number }[]> {
  const rows = rowsOf<{ file_name: string; file_size: number | string }>(
    await tx.execute(sql`
      delete from pending_outputs p
      where not exists (select 1 from builds b where b.id = p.build_id and b.attempt = p.attempt and b.state in ('allocated', 'started'))
      returning p.file_name, p.file_size`),
  );
  return rows.map((r) => ({ fileName: r.file_name, fileSize: Number(r.file_size) }));
}

function groupByPath(rows: { path: string; file_name: string; file_size: number | string }[]): RemovedPath[] {
  const byPath = new Map<string, RemovedPath>();
  for (const r of rows) {
    let entry = byPath.get(r.path);
    if (!entry) byPath.set(r.path, (entry = { path: r.path, files: [] }));
    entry.files.push({ fileName: r.file_name, fileSize: Number(r.file_size) });
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
}

/**
 * Of these (build id, attempt) pairs, those whose attempt is over: the build is not held
 * at that attempt (or is gone). Their staged uploads can never be resumed.
 */
export async function endedAttempts(db: Executor, attempts: { buildId: string; attempt: number }[]): Promise<{ buildId: string; attempt: number }[]> {
  if (attempts.length === 0) return [];
  const rows = rowsOf<{ build_id: string; attempt: number }>(
    await db.execute(sql`
      select v.build_id, v.attempt from unnest(${sql.param(attempts.map((a) => a.buildId))}::uuid[], ${sql.param(attempts.map((a) => a.attempt))}::int[]) as v(build_id, attempt)
      where not exists (select 1 from builds b where b.id = v.build_id and b.attempt = v.attempt and b.state in ('allocated', 'started'))`),
  );
  return rows.map((r) => ({ buildId: r.build_id, attempt: Number(r.attempt) }));
}
