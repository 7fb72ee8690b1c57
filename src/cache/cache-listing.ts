// The store paths the binary cache serves, in pages by hash part (keyset, so a page costs
// the same at the millionth path as at the first), each with a version of its narinfo:
// what `kiln cache export` compares to know what changed since its last run.
import { createHash } from 'node:crypto';
import { and, asc, eq, gt, sql } from 'drizzle-orm';
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

/**
 * Up to `limit` paths signed by the keys named `fingerprint` (those the cache serves),
 * whose hash part sorts after `after`, in ascending order of hash part.
 */
export async function listCachePaths(db: Database, fingerprint: string, limit: number, after?: string): Promise<ListedPath[]> {
  const rows = await db
    .select({
      hashPart: storePaths.hashPart,
      path: storePaths.path,
      guixSignature: storePaths.guixSignature,
      fileName: storePaths.fileName,
      others: sql<string>`coalesce((select string_agg(f.file_name, ' ') from nar_files f where f.path = ${storePaths.path}), '')`,
    })
    .from(storePaths)
    .where(and(eq(storePaths.signatureKey, fingerprint), after === undefined ? undefined : gt(storePaths.hashPart, after)))
    .orderBy(asc(storePaths.hashPart))
    .limit(limit);
  return rows.map((r) => ({
    hashPart: r.hashPart,
    path: r.path,
    version: narInfoVersion(r.guixSignature ?? '', [r.fileName, ...(r.others ? r.others.split(' ') : [])]),
  }));
}
