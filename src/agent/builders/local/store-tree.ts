// File-tree chores of a store kiln keeps itself: making a path read-only with a fixed
// timestamp once it is in the store (as Nix's canonicalisePathMetaData does, so that a
// build outside any sandbox cannot change its inputs by accident), and deleting such a
// path again.
import { lstat, lutimes, chmod, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** Nix sets every mtime in the store to 1 (one second after the epoch). */
const STORE_MTIME = 1;

/**
 * Files become 0444, or 0555 when the owner may execute them; directories 0555;
 * symlinks keep theirs. Every mtime becomes 1. Children first, so a directory is made
 * read-only only after its entries are done.
 */
export async function makeReadOnly(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isDirectory()) {
    for (const name of await readdir(path)) await makeReadOnly(join(path, name));
  }
  if (!st.isSymbolicLink()) {
    const mode = st.isDirectory() || st.mode & 0o100 ? 0o555 : 0o444;
    if ((st.mode & 0o7777) !== mode) await chmod(path, mode);
  }
  await lutimes(path, STORE_MTIME, STORE_MTIME);
}

/**
 * Removes a tree even where it was made read-only: directories are made writable first
 * (root needs no such help; any other user does).
 */
export async function deleteTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    await makeWritable(path);
    await rm(path, { recursive: true, force: true });
  }
}

async function makeWritable(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isDirectory()) return;
  await chmod(path, (st.mode & 0o7777) | 0o700);
  for (const name of await readdir(path)) await makeWritable(join(path, name));
}
