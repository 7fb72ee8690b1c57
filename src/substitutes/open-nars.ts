// NAR files kept open a moment after a download, so that a NAR asked for again and again
// (one of a popular closure) costs one positional read per chunk instead of open, fstat,
// read and close, each a trip through libuv's thread pool. A kept descriptor is used only
// while the path still names the same file, unchanged (a stat: gc here or on another
// replica may have removed it, or a file may have been put in its place) and for KEEP_MS
// after it was opened; at most MAX_OPEN are held, the oldest closed
// first, each once its last download ends.
import { statSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { READ_CHUNK_BYTES, type NarStorage, type OpenedFile } from '../storage/nar-storage.js';

const MAX_OPEN = 128;
const KEEP_MS = 10_000;

interface Kept {
  file: OpenedFile;
  openedAtMs: number;
  users: number;
  retired: boolean;
}

export class OpenNars {
  private readonly kept = new Map<string, Kept>();

  constructor(
    private readonly storage: NarStorage,
    private readonly maxOpen = MAX_OPEN,
    private readonly keepMs = KEEP_MS,
  ) {}

  /** The file's size and a stream of it (or of a range, inclusive end); undefined when it is not stored. */
  async open(fileName: string): Promise<{ size: number; stream(range?: { start: number; end: number }): Readable; done(): void } | undefined> {
    const entry = await this.entry(fileName);
    if (!entry) return undefined;
    entry.users++;
    let released = false;
    const done = () => {
      if (released) return;
      released = true;
      entry.users--;
      if (entry.retired && entry.users === 0) void entry.file.handle.close().catch(() => undefined);
    };
    const { size } = entry.file;
    return {
      size,
      done,
      stream: (range) => positionalStream(entry.file.handle, range?.start ?? 0, range?.end ?? size - 1, done),
    };
  }

  /** Closes every kept descriptor not in use now, and the others as their downloads end. */
  close(): void {
    for (const [name, entry] of this.kept) this.retire(name, entry);
  }

  private async entry(fileName: string): Promise<Kept | undefined> {
    const now = Date.now();
    const held = this.kept.get(fileName);
    if (held) {
      if (now - held.openedAtMs < this.keepMs && this.unchanged(fileName, held.file)) return held;
      this.retire(fileName, held);
    }
    const file = await this.storage.openStored(fileName);
    if (!file) return undefined;
    // Another request may have opened it while this one waited.
    const raced = this.kept.get(fileName);
    if (raced && !raced.retired) {
      await file.handle.close();
      return raced;
    }
    const entry: Kept = { file, openedAtMs: now, users: 0, retired: false };
    this.kept.set(fileName, entry);
    for (const [name, oldest] of this.kept) {
      if (this.kept.size <= this.maxOpen) break;
      if (oldest !== entry) this.retire(name, oldest);
    }
    return entry;
  }

  /** Whether the stored file is still the one held open, at the size measured then. */
  private unchanged(fileName: string, file: OpenedFile): boolean {
    const now = statSync(this.storage.filePath(fileName), { throwIfNoEntry: false });
    return now !== undefined && now.ino === file.ino && now.size === file.size;
  }

  private retire(fileName: string, entry: Kept): void {
    if (this.kept.get(fileName) === entry) this.kept.delete(fileName);
    if (entry.retired) return;
    entry.retired = true;
    if (entry.users === 0) void entry.file.handle.close().catch(() => undefined);
  }
}

/**
 * Bytes start..end (inclusive) of a shared descriptor, by positional reads, so downloads of
 * one file do not interfere; `closed` is called once, when the stream ends or is destroyed.
 * Not fs.ReadStream: destroying one closes its descriptor whatever autoClose says, and a
 * stream of a FileHandle adds a listener to it that is never removed. A FileHandle's
 * close waits for its reads in flight.
 */
function positionalStream(handle: FileHandle, start: number, end: number, closed: () => void): Readable {
  let at = start;
  return new Readable({
    highWaterMark: READ_CHUNK_BYTES,
    read() {
      const n = Math.min(READ_CHUNK_BYTES, end + 1 - at);
      if (n <= 0) {
        this.push(null);
        return;
      }
      handle.read(Buffer.allocUnsafe(n), 0, n, at).then(
        ({ bytesRead, buffer }) => {
          if (this.destroyed) return;
          // Stored files never shrink: a short file is one being removed, not a NAR to send cut.
          if (bytesRead === 0) return void this.destroy(new Error(`NAR file ended at byte ${at} of ${end + 1}`));
          at += bytesRead;
          this.push(bytesRead === n ? buffer : buffer.subarray(0, bytesRead));
          if (at > end) this.push(null);
        },
        (err: unknown) => this.destroy(err as Error),
      );
    },
    destroy(err, callback) {
      closed();
      callback(err);
    },
  });
}
