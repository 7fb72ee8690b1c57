// The size of a path's NAR without writing it: the archive's framing is fixed by the
// tree's shape, names, symlink targets and file sizes, so a walk of lstat calls gives the
// exact byte count `nix-store --dump` would produce, without reading any file's contents.
// An uploader declares it ahead, so that a NAR over a limit is refused before it is sent.
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { framedLength, NAR_MAGIC, NarError } from './nar-format.js';

/** The framed size of each fixed token sequence (as nar-writer.ts writes them). */
const tokens = (...t: string[]) => t.reduce((n, s) => n + framedLength(Buffer.byteLength(s)), 0);
const MAGIC = tokens(NAR_MAGIC);
const REGULAR = tokens('(', 'type', 'regular');
const EXECUTABLE = tokens('executable', '');
const CONTENTS = tokens('contents');
const SYMLINK = tokens('(', 'type', 'symlink', 'target');
const DIRECTORY = tokens('(', 'type', 'directory');
const ENTRY = tokens('entry', '(', 'name');
const NODE = tokens('node');
const CLOSE = tokens(')');

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
    if (st.isFile()) return REGULAR + (st.mode & 0o100 ? EXECUTABLE : 0) + CONTENTS + framedLength(st.size) + CLOSE;
    if (st.isSymbolicLink()) return SYMLINK + framedLength(readlinkSync(p, { encoding: 'buffer' }).length) + CLOSE;
    if (!st.isDirectory()) throw new NarError(`${p.toString()} is not a regular file, symlink or directory; a NAR holds only those`);
    let size = DIRECTORY + CLOSE;
    for (const name of readdirSync(p, { encoding: 'buffer' })) {
      const child = Buffer.concat([p, SLASH, name]);
      size += ENTRY + framedLength(name.length) + NODE + (await node(child, lstatSync(child))) + CLOSE;
      await breathe();
    }
    return size;
  };
  const root = Buffer.from(path);
  return MAGIC + (await node(root, lstatSync(root)));
}

const SLASH = Buffer.from('/');
