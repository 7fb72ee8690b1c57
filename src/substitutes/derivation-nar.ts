// Submitted .drv files go into the binary cache too, so that agents pull a build's
// derivation closure from the coordinator (`nix copy --derivation --from …`).
import { sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { rowsOf } from '../db/rows.js';
import { storePaths } from '../db/schema.js';
import { Hash } from '../store/hash.js';
import { compressLz4Frame } from '../store/lz4-frames.js';
import { narOfFile } from '../store/nar-file.js';
import { parseStorePath } from '../store/store-path.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { holdCacheShared } from '../db/cache-lock.js';
import type { PathSigner } from './narinfo-signer.js';

interface DerivationFile {
  path: string;
  text: string;
  /** What the .drv refers to: its input sources and input derivations. */
  references: string[];
}

/** Writes the .drv's NAR (LZ4) to storage; returns the row that records it. */
async function storeDerivationNar(storage: NarStorage, drv: DerivationFile): Promise<typeof storePaths.$inferInsert> {
  const nar = narOfFile(Buffer.from(drv.text, 'utf8'));
  const file = await compressLz4Frame(nar);
  const fileHash = Hash.of('sha256', file);
  const fileName = `${fileHash.base32}.nar.lz4`;
  await storage.put(fileName, file);
  return {
    path: drv.path,
    hashPart: parseStorePath(drv.path).hashPart,
    narHash: Hash.of('sha256', nar).toString(),
    narSize: nar.length,
    references: [...drv.references].sort(),
    deriver: '',
    fileName,
    compression: 'lz4',
    fileHash: fileHash.toString(),
    fileSize: file.length,
  };
}

type Executor = Pick<Database, 'execute' | 'insert'>;

/**
 * Puts into the cache the .drv files of the closures of the stored derivations `roots`
 * that it lacks, made from their stored texts: new ones, and those garbage collection
 * removed once no unfinished build needed them. In the transaction that submits (or
 * retries) the build, holding the cache lock, so that the files and rows arrive together
 * and gc cannot take them before the build that needs them is committed. A .drv in the
 * cache has its input .drv files there too (they arrive together and gc keeps closures),
 * so the walk stops at the first one present. `sign` signs their narinfos (without it the
 * background signer does).
 */
export async function restoreDerivationNars(tx: Executor, storage: NarStorage, roots: string[], sign?: PathSigner): Promise<number> {
  await holdCacheShared(tx);
  const missing = rowsOf<{ path: string; text: string; sources: string[]; inputs: string[] }>(
    await tx.execute(sql`
      with recursive closure(path) as (
        select r.path from unnest(${sql.param(roots)}::text[]) as r(path)
        where not exists (select 1 from store_paths p where p.path = r.path)
        union
        select i.input_path from closure c join derivation_inputs i on i.derivation_path = c.path
        where not exists (select 1 from store_paths p where p.path = i.input_path)
      )
      select d.path, d.text,
        array(select s.path from derivation_sources s where s.derivation_path = d.path) as sources,
        array(select distinct i.input_path from derivation_inputs i where i.derivation_path = d.path) as inputs
      from closure c join derivations d on d.path = c.path`),
  );
  for (const d of missing) {
    const row = await storeDerivationNar(storage, { path: d.path, text: d.text, references: [...d.sources, ...d.inputs] });
    await tx.insert(storePaths).values({ ...row, ...sign?.({ ...row, references: row.references ?? [] }) }).onConflictDoNothing();
  }
  return missing.length;
}
