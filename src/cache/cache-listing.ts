// The store paths the binary cache serves, in pages by hash part (keyset, so a page costs
// the same at the millionth path as at the first), each with a version of its narinfo:
// what `kiln cache export` compares to know what changed since its last run.
import { createHash } from 'node:crypto';
import { asc, gt, sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { storePaths } from '../db/schema.js';

export interface ListedPath {
  hashPart: string;
  path: string;
  /** Changes whenever the narinfo served for the path does. */
  version: string;
}

/**
 * The narinfo a path is served with is rendered from its row, its signatures and its NAR
 * files; the row's other fields never change while it exists (a path collected and
 * stored again has a new NAR file name). The Guix signature covers every signed field and
 * the Nix signature, and changes with the keys or the host name; the file names are hashes
 * of the files. So these two determine the text.
 */
export function narInfoVersion(guixSignature: string, fileNames: readonly string[]): string {
  return createHash('sha256').update(guixSignature).update('\n').update([...fileNames].sort().join(' ')).digest('hex').slice(0, 32);
}

export interface ListingPage {
  /** The paths of the page the current keys signed (those the cache serves). */
  paths: ListedPath[];
  /** The last hash part the page covered, when there are more after it. */
  next?: string;
}

/**
 * The next `limit` rows after hash part `after` (all from the start without it), in
 * ascending order of hash part, keeping those signed by the keys named `fingerprint`.
 * The signature is checked here, not in SQL: the only plan for this statement is then a
 * walk of the hash-part index that stops after `limit` rows, while a `signature_key`
 * condition lets the planner take that column's index and sort every row for each page
 * (seen on PostgreSQL before its statistics were gathered: 270 ms a page at 100,000 rows).
 * A page may so hold fewer paths than `limit`, or none, with more to come.
 */
export async function listCachePaths(db: Database, fingerprint: string, limit: number, after?: string): Promise<ListingPage> {
  const rows = await db
    .select({
      hashPart: storePaths.hashPart,
      path: storePaths.path,
      signatureKey: storePaths.signatureKey,
      guixSignature: storePaths.guixSignature,
      fileName: storePaths.fileName,
      others: sql<string>`coalesce((select string_agg(f.file_name, ' ') from nar_files f where f.path = ${storePaths.path}), '')`,
    })
    .from(storePaths)
    .where(after === undefined ? undefined : gt(storePaths.hashPart, after))
    .orderBy(asc(storePaths.hashPart))
    .limit(limit + 1);
  const page = rows.slice(0, limit);
  return {
    paths: page
      .filter((r) => r.signatureKey === fingerprint && r.guixSignature !== null)
      .map((r) => ({
        hashPart: r.hashPart,
        path: r.path,
        version: narInfoVersion(r.guixSignature!, [r.fileName, ...(r.others ? r.others.split(' ') : [])]),
      })),
    next: rows.length > limit ? page[page.length - 1]!.hashPart : undefined,
  };
}
