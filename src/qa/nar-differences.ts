// What differs between NARs of the same output built on different agents: each NAR is
// listed (every entry's path, type, size and SHA-256, as Nix's .ls listings give them),
// and the entries that are not alike in all of them are reported; for a small text file,
// where its contents first differ. Pure: NAR bytes in, differences out.
import { createHash } from 'node:crypto';
import { parseNar, type ByteSource } from '../store/nar-parser.js';

export type EntryType = 'regular' | 'executable' | 'symlink' | 'directory' | 'missing';

export interface ListedEntry {
  type: EntryType;
  size: number;
  /** Contents' SHA-256 (base16) for files, the target for symlinks, '' for directories. */
  sha256: string;
  /** The whole contents of a small file (at most SMALL_FILE bytes), to find where versions differ. */
  contents?: Buffer;
}

/** Files up to this size are kept whole while listing, to show their first difference. */
export const SMALL_FILE = 64 << 10;
/** Bytes of text shown from the first difference on. */
export const EXCERPT = 64;

/** Every entry of a NAR by its path inside the archive ('' for the root). */
export async function listNar(nar: ByteSource): Promise<Map<string, ListedEntry>> {
  const entries = new Map<string, ListedEntry>();
  let file: { path: string; entry: ListedEntry; hash: ReturnType<typeof createHash>; chunks: Buffer[] | undefined } | undefined;
  const close = () => {
    if (!file) return;
    file.entry.sha256 = file.hash.digest('hex');
    if (file.chunks) file.entry.contents = Buffer.concat(file.chunks);
    file = undefined;
  };
  for await (const event of parseNar(nar)) {
    if (event.type === 'contents') {
      file!.hash.update(event.chunk);
      file!.chunks?.push(Buffer.from(event.chunk));
      continue;
    }
    close();
    if (event.type === 'directory') entries.set(event.path, { type: 'directory', size: 0, sha256: '' });
    else if (event.type === 'symlink') entries.set(event.path, { type: 'symlink', size: 0, sha256: event.target });
    else if (event.type === 'regular') {
      const entry: ListedEntry = { type: event.executable ? 'executable' : 'regular', size: event.size, sha256: '' };
      entries.set(event.path, entry);
      file = { path: event.path, entry, hash: createHash('sha256'), chunks: event.size <= SMALL_FILE ? [] : undefined };
    }
  }
  close();
  return entries;
}

export interface FileVersion {
  /** Which listing (the caller's numbering: the results' positions). */
  position: number;
  type: EntryType;
  size: number;
  sha256: string;
  /** For a small text file whose contents differ: where they first differ, and its text from there. */
  firstDifference?: number;
  excerpt?: string;
}

export interface DifferingFile {
  path: string;
  versions: FileVersion[];
}

/** The entries not alike in every listing, in path order. */
export function differences(listings: { position: number; entries: Map<string, ListedEntry> }[]): DifferingFile[] {
  const paths = [...new Set(listings.flatMap((l) => [...l.entries.keys()]))].sort();
  const found: DifferingFile[] = [];
  for (const path of paths) {
    const versions = listings.map(({ position, entries }) => ({ position, entry: entries.get(path) }));
    const alike = versions.every(({ entry }) => entry && versions[0]!.entry && sameEntry(entry, versions[0]!.entry));
    if (alike) continue;
    const texts = versions.map((v) => v.entry?.contents).filter((c): c is Buffer => c !== undefined && isText(c));
    const first = texts.length === versions.length ? firstDifference(texts) : undefined;
    found.push({
      path,
      versions: versions.map(({ position, entry }) => ({
        position,
        type: entry?.type ?? 'missing',
        size: entry?.size ?? 0,
        sha256: entry?.sha256 ?? '',
        ...(first !== undefined && entry?.contents
          ? { firstDifference: first, excerpt: entry.contents.subarray(first, first + EXCERPT).toString('utf8') }
          : {}),
      })),
    });
  }
  return found;
}

function sameEntry(a: ListedEntry, b: ListedEntry): boolean {
  return a.type === b.type && a.size === b.size && a.sha256 === b.sha256;
}

/** Text, as far as showing it goes: valid UTF-8 without NUL. */
function isText(bytes: Buffer): boolean {
  return !bytes.includes(0) && Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes);
}

/** The first offset where the buffers are not all alike (one ending counts), or undefined if none. */
function firstDifference(buffers: Buffer[]): number | undefined {
  const shortest = Math.min(...buffers.map((b) => b.length));
  for (let i = 0; i < shortest; i++) {
    if (buffers.some((b) => b[i] !== buffers[0]![i])) return i;
  }
  return buffers.every((b) => b.length === shortest) ? undefined : shortest;
}
