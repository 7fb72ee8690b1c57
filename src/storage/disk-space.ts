// Disk space as storage speaks of it: how much a directory's filesystem has free, and the
// domain error for a write that found none (ENOSPC, or EDQUOT for a quota), which the
// API edge maps to RESOURCE_EXHAUSTED. The message names the path and the free space, so
// that an operator knows where to make room.
import { statfs } from 'node:fs/promises';
import { formatBytes } from '../byte-sizes.js';
import { KilnError } from '../errors.js';

/** Bytes an unprivileged writer may still use on the filesystem holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const st = await statfs(dir);
  return st.bavail * st.bsize;
}

/** A write failed for want of space or quota (not any other I/O error). */
export function isOutOfSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** What is free on `dir`'s filesystem, in words; "unknown" when it cannot be read either. */
async function freeText(dir: string): Promise<string> {
  return freeBytes(dir).then(formatBytes, () => 'an unknown amount');
}

/**
 * The domain error for storing `what` at `path` (on the storage under `dir`) that ran out
 * of space: kind resource_exhausted, with the free space left now.
 */
export async function outOfSpaceError(err: unknown, what: string, path: string, dir: string): Promise<KilnError> {
  const reason = (err as NodeJS.ErrnoException | undefined)?.code === 'EDQUOT' ? 'disk quota exceeded' : 'no space left on device';
  return new KilnError(
    'resource_exhausted',
    `out of space storing ${what} at ${path} (${reason}; ${await freeText(dir)} free on ${dir}): free space there; the coordinator refuses what needs room until then`,
    { cause: err },
  );
}

/** An error a short write (fewer bytes than asked, with no error) means: the filesystem is full. */
export function shortWrite(written: number, asked: number): NodeJS.ErrnoException {
  return Object.assign(new Error(`${written} of ${asked} bytes written`), { code: 'ENOSPC' });
}
