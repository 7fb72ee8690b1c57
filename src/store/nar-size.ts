// The size of a path's NAR without writing it: the archive's framing is fixed by the
// tree's shape, names, symlink targets and file sizes, so a walk of lstat calls gives the
// exact byte count `nix-store --dump` would produce, without reading any file's contents.
// An uploader declares it ahead, so that a NAR over a limit is refused before it is sent.
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { framedLength, NarError } from './nar-format.js';
import * as framed from './nar-tokens.js';

/** How long the walk holds the event loop before it gives it a turn. */
const EVENT_LOOP_SLICE_MS = 10;

/** The byte count of the NAR of `path` (a symlink is archived as itself), as dumpPath would stream it. */
export async function narSizeOf(path: string, signal?: AbortSignal): Promise<number> {
  let sliceStart = performance.now();
  const breathe = async () => {
    if (performance.now() - sliceStart > EVENT_LOOP_SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
    signal?.throwIfAborted();
  };
  const node = async (p: Buffer, st: Stats): Promise<number> => {
    if (st.isFile()) return framed.REGULAR.length + (st.mode & 0o100 ? framed.EXECUTABLE.length : 0) + framed.CONTENTS.length + framedLength(st.size) + framed.CLOSE.length;
    if (st.isSymbolicLink()) return framed.SYMLINK.length + framedLength(readlinkSync(p, { encoding: 'buffer' }).length) + framed.CLOSE.length;
    if (!st.isDirectory()) throw new NarError(`${p.toString()} is not a regular file, symlink or directory; a NAR holds only those`);
    let size = framed.DIRECTORY.length + framed.CLOSE.length;
    for (const name of readdirSync(p, { encoding: 'buffer' })) {
      const child = Buffer.concat([p, SLASH, name]);
      size += framed.ENTRY.length + framedLength(name.length) + framed.NODE.length + (await node(child, lstatSync(child))) + framed.CLOSE.length;
      await breathe();
    }
    return size;
  };
  const root = Buffer.from(path);
  return framed.MAGIC.length + (await node(root, lstatSync(root)));
}

const SLASH = Buffer.from('/');
