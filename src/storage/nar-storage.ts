// NAR blob storage on a filesystem directory. Uploads are staged under `staging/`
// frame by frame, with a journal of complete frames so that an interrupted upload
// resumes at a frame boundary; a staged file becomes visible under `nar/` only by an
// atomic rename once the receiver has checked it. Nothing half written is ever served.
// A staged upload has one writer at a time: a second one (a retry racing the call it
// replaces) is refused rather than let interleave its frames with the first's.
//
// Most outputs of a distribution are small: one frame. A fresh upload therefore holds
// its first frame in memory and opens the staging files only when a second frame comes
// (or the upload is kept for a resume); one that ends after its first frame is written
// into place whole, by a few synchronous calls instead of ten through the thread pool;
// nothing of the resume guarantee is lost: a kept upload is written out first.
//
// Out of space (or quota) is a refusal of its own (disk-space.ts), never a broken upload
// kept for a resume: what the upload staged is removed at once, so that a full disk is
// not kept full by the upload that filled it, and no empty staging file stays behind.
// Below a floor of free space (minFreeBytes) uploads are refused before they start.
//
// Finished NARs may live elsewhere: given a blob store (S3), staging stays in this
// directory and a checked upload is copied into the store, then its staged files go; every
// read, listing and removal goes to the store. Without one, nar/ is the store.
import { createReadStream, renameSync, rmSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { mkdir, open, opendir, readdir, readFile, rename, rm, stat, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { KilnError } from '../errors.js';
import type { BlobStore } from './blob-store.js';
import { formatBytes } from '../byte-sizes.js';
import { freeBytes, isOutOfSpace, outOfSpaceError, shortWrite } from './disk-space.js';

/**
 * Reads of a stored file for serving and decompressing: 1 MiB each, not fs's 64 KiB, so a
 * 100 MiB NAR is a hundred reads and socket writes, not sixteen hundred. A read never
 * allocates past the end it was given, so a small file still costs its own size.
 */
export const READ_CHUNK_BYTES = 1 << 20;

export interface OpenedFile {
  handle: FileHandle;
  size: number;
  /** The file's inode: a file renamed over it later is another file. */
  ino: number;
}

export interface FrameRecord {
  /** Bytes of the frame as stored (compressed). */
  stored: number;
  /** Bytes it holds uncompressed. */
  plain: number;
}

/** A complete frame to stage, and how many bytes it holds uncompressed. */
export interface StagedFrame {
  bytes: Uint8Array;
  plain: number;
}

export interface StagedUpload {
  /** Uncompressed bytes held in complete frames: where the sender resumes. */
  readonly plainOffset: number;
  /** Stored (compressed) bytes held. */
  readonly storedSize: number;
  readonly frames: readonly FrameRecord[];
  /** Appends complete frames with one write, then records them in the journal with one more. */
  appendFrames(frames: readonly StagedFrame[]): Promise<void>;
  /** Reads the staged frames back in order, for checking on resume. */
  readFrames(): AsyncIterable<Buffer>;
  /** Moves the checked upload into place under its final name (atomic rename) and lets it go. */
  commit(fileName: string): Promise<void>;
  /** Throws the staged bytes away and lets the upload go. */
  discard(): Promise<void>;
  /** Keeps what is staged, for a resume, and lets the upload go. */
  close(): Promise<void>;
}

/** Another writer holds the staged upload under this key. */
export class StagingInUseError extends Error {
  override name = 'StagingInUseError';
  constructor(readonly key: string) {
    super(`the staged upload ${key} is being written by another call`);
  }
}

/** A file name under nar/: `<file hash>.nar.<ext>`; checked so no name escapes the directory. */
const FILE_NAME = /^[0-9a-z]{52}\.nar(\.[a-z0-9]{1,8})?$/;
const STAGING_KEY = /^[A-Za-z0-9._-]{1,200}$/;
/** A staged upload's two files: `<key>.part` (its frames) and `<key>.frames` (their journal). */
const STAGING_FILE = /\.(part|frames)$/;

export interface NarStorageOptions {
  /** Uploads are refused while the directory's filesystem has less free than this (0: never). */
  minFreeBytes?: number;
  /** Where finished NARs live, when not in the directory's nar/ (S3): keys nar/<file name>. */
  blobs?: BlobStore;
  /** How long a redirect to the blob store's own URL for a NAR is good for (0 or none: kiln streams every NAR). */
  redirectSeconds?: number;
}

/** The blob store's key for a NAR file. */
const blobKey = (fileName: string) => `nar/${fileName}`;

/**
 * How old a reading of the free space may be when an upload asks for room: a farm stores
 * hundreds of outputs a second, and each statfs is a trip through the thread pool.
 */
const FREE_SPACE_MAX_AGE_MS = 1_000;

export class NarStorage {
  /** Keys of the staged uploads open for writing (in this process). */
  private readonly writing = new Set<string>();

  /**
   * Keys that may have staging files (read from staging/ at open, then kept): a small
   * upload put into place whole removes an earlier attempt's files only when there may be
   * some, not with two calls that find nothing every time. Files another process sharing
   * the directory leaves meanwhile are not known here; they can only cost disk space, as
   * a fresh upload never reads them and a finished output is never uploaded again.
   */
  private readonly mayHaveFiles: Set<string>;

  /** The last reading of the free space, for the floor's check. */
  private freeReading: { atMs: number; bytes: Promise<number> } | undefined;

  private constructor(
    readonly root: string,
    stagedKeys: Iterable<string>,
    private readonly minFreeBytes: number,
    /** The blob store finished NARs go to; undefined: nar/ under root. */
    private readonly blobs: BlobStore | undefined,
    private readonly redirectSeconds: number,
  ) {
    this.mayHaveFiles = new Set(stagedKeys);
  }

  static async open(root: string, opts: NarStorageOptions = {}): Promise<NarStorage> {
    await mkdir(join(root, 'nar'), { recursive: true });
    await mkdir(join(root, 'staging'), { recursive: true });
    const keys = (await readdir(join(root, 'staging'))).filter((f) => STAGING_FILE.test(f)).map((f) => f.replace(STAGING_FILE, ''));
    return new NarStorage(root, keys, opts.minFreeBytes ?? 0, opts.blobs, opts.redirectSeconds ?? 0);
  }

  /** Bytes free on the filesystem that holds the NARs, read now. */
  freeBytes(): Promise<number> {
    return freeBytes(this.root);
  }

  /** Refuses an upload while free space is below the floor (a reading at most FREE_SPACE_MAX_AGE_MS old). */
  private async checkRoom(key: string): Promise<void> {
    if (this.minFreeBytes <= 0) return;
    const now = Date.now();
    if (!this.freeReading || now - this.freeReading.atMs > FREE_SPACE_MAX_AGE_MS) {
      const bytes = this.freeBytes();
      bytes.catch(() => undefined);
      this.freeReading = { atMs: now, bytes };
    }
    const free = await this.freeReading.bytes;
    if (free >= this.minFreeBytes) return;
    throw new KilnError(
      'resource_exhausted',
      `refused the upload ${key}: ${this.root} has ${formatBytes(free)} free, below the ${formatBytes(this.minFreeBytes)} the coordinator keeps free (--min-free-nar-gib); free space there, and the upload is taken again`,
    );
  }

  private stagingPaths(key: string): { data: string; journal: string } {
    if (!STAGING_KEY.test(key)) throw new Error(`bad staging key ${JSON.stringify(key)}`);
    const base = join(this.root, 'staging', key);
    return { data: base + '.part', journal: base + '.frames' };
  }

  filePath(fileName: string): string {
    if (!FILE_NAME.test(fileName)) throw new Error(`bad NAR file name ${JSON.stringify(fileName)}`);
    return join(this.root, 'nar', fileName);
  }

  /**
   * Opens the staged upload under `key`, creating it or resuming it. On resume the data
   * file is cut back to the last frame the journal records, dropping a partial frame.
   * Throws StagingInUseError while another caller has it open.
   */
  async stage(key: string, opts: { fresh: boolean }): Promise<StagedUpload> {
    this.stagingPaths(key);
    if (this.writing.has(key)) throw new StagingInUseError(key);
    await this.checkRoom(key);
    if (this.writing.has(key)) throw new StagingInUseError(key); // taken while the free space was read
    this.writing.add(key);
    try {
      return await this.open(key, opts);
    } catch (err) {
      this.writing.delete(key);
      throw err;
    }
  }

  private async open(key: string, opts: { fresh: boolean }): Promise<StagedUpload> {
    const paths = this.stagingPaths(key);
    if (opts.fresh) {
      return new FreshStagedUpload({
        // Starting over: truncating both files drops whatever an earlier attempt left.
        spill: async () => {
          this.mayHaveFiles.add(key);
          const data = await open(paths.data, 'w').catch((err: unknown) => this.failStaging(key, paths.data, err));
          const journal = await open(paths.journal, 'w').catch(async (err: unknown) => {
            await data.close();
            return this.failStaging(key, paths.journal, err);
          });
          return this.staged(key, paths, data, journal, []);
        },
        commitWhole: async (frame, fileName) => {
          const leftovers = this.mayHaveFiles.has(key) ? [paths.data, paths.journal] : [];
          if (this.blobs) {
            await this.blobs.put(blobKey(fileName), frame);
            for (const path of leftovers) await rm(path, { force: true });
            this.mayHaveFiles.delete(key);
            return;
          }
          try {
            this.putSmall(fileName, frame, leftovers);
          } catch (err) {
            if (!isOutOfSpace(err)) throw err;
            await this.discard(key);
            throw await outOfSpaceError(err, `the upload ${key}`, this.filePath(fileName), this.root);
          }
          this.mayHaveFiles.delete(key);
        },
        discard: () => this.discard(key),
        release: () => this.writing.delete(key),
      });
    }
    const frames = await readJournal(paths.journal);
    const storedSize = frames.reduce((n, f) => n + f.stored, 0);
    const existing = await stat(paths.data).catch(() => undefined);
    if ((existing?.size ?? 0) < storedSize) {
      // The journal claims more than the data file has: do not trust either.
      await this.discard(key);
      return this.open(key, { fresh: true });
    }
    if (existing && existing.size > storedSize) await truncate(paths.data, storedSize);
    this.mayHaveFiles.add(key);
    return this.staged(key, paths, await open(paths.data, 'a'), await open(paths.journal, 'a'), frames);
  }

  private staged(key: string, paths: { data: string }, data: FileHandle, journal: FileHandle, frames: FrameRecord[]): StagedUpload {
    return new FsStagedUpload(paths.data, data, journal, frames, {
      commit: (fileName) => this.commit(key, fileName),
      discard: () => this.discard(key),
      release: () => this.writing.delete(key),
      outOfSpace: (err) => outOfSpaceError(err, `the upload ${key}`, paths.data, this.root),
    });
  }

  /** Keys with staging files under staging/ now, other than those open for writing in this process. */
  async stagedKeys(): Promise<string[]> {
    const names = await readdir(join(this.root, 'staging'));
    const keys = new Set(names.filter((f) => STAGING_FILE.test(f)).map((f) => f.replace(STAGING_FILE, '')));
    return [...keys].filter((k) => !this.writing.has(k));
  }

  /** Removes what is staged under `key`, unless a writer in this process holds it. Says whether it did. */
  async discardStaged(key: string): Promise<boolean> {
    if (this.writing.has(key)) return false;
    await this.discard(key);
    return true;
  }

  /** A staging file could not be opened: out of space removes what the upload staged. */
  private async failStaging(key: string, path: string, err: unknown): Promise<never> {
    if (!isOutOfSpace(err)) throw err;
    await this.discard(key);
    throw await outOfSpaceError(err, `the upload ${key}`, path, this.root);
  }

  /** Size of what is staged under `key`, without opening it for writing. */
  async stagedOffset(key: string): Promise<number> {
    const frames = await readJournal(this.stagingPaths(key).journal);
    return frames.reduce((n, f) => n + f.plain, 0);
  }

  private async commit(key: string, fileName: string): Promise<void> {
    const paths = this.stagingPaths(key);
    // Into the blob store whole before the staged files go: a failure keeps them for a retry.
    if (this.blobs) {
      await this.blobs.put(blobKey(this.checkName(fileName)), createReadStream(paths.data));
      await rm(paths.data, { force: true });
    } else {
      await rename(paths.data, this.filePath(fileName));
    }
    await rm(paths.journal, { force: true });
    this.mayHaveFiles.delete(key);
  }

  /** Where a file stored whole is written before it is renamed into place. */
  private putPath(fileName: string): string {
    return join(this.root, 'staging', `${fileName}.${process.pid}.${randomUUID()}.put`);
  }

  /** Stores a small file whole (written aside, then renamed into place). */
  async put(fileName: string, bytes: Uint8Array): Promise<void> {
    const final = this.filePath(fileName);
    if (this.blobs) return this.blobs.put(blobKey(fileName), bytes);
    const temp = this.putPath(fileName);
    try {
      await writeFile(temp, bytes);
    } catch (err) {
      // A partial (or empty) file written aside is never of use.
      await rm(temp, { force: true });
      throw isOutOfSpace(err) ? await outOfSpaceError(err, fileName, final, this.root) : err;
    }
    await rename(temp, final);
  }

  /**
   * Puts a small file (one frame, at most a few dozen KiB) into place and removes
   * `leftovers`, with synchronous calls: they return from the page cache in microseconds,
   * where each call through libuv's thread pool costs the event loop tens of them, and a
   * farm stores hundreds of small outputs a second.
   */
  private putSmall(fileName: string, bytes: Uint8Array, leftovers: string[]): void {
    const final = this.filePath(fileName);
    const temp = this.putPath(fileName);
    try {
      writeFileSync(temp, bytes);
    } catch (err) {
      rmSync(temp, { force: true });
      throw err;
    }
    renameSync(temp, final);
    for (const path of leftovers) rmSync(path, { force: true });
  }

  private async discard(key: string): Promise<void> {
    const paths = this.stagingPaths(key);
    await rm(paths.data, { force: true });
    await rm(paths.journal, { force: true });
    this.mayHaveFiles.delete(key);
  }

  /**
   * A path under staging/ for a file written whole whose name is known only once it is
   * written (its hash); `adopt` then moves it into place.
   */
  temporaryPath(label: string): string {
    if (!STAGING_KEY.test(label)) throw new Error(`bad staging label ${JSON.stringify(label)}`);
    return join(this.root, 'staging', `${label}.${process.pid}.${randomUUID()}.tmp`);
  }

  /** Moves a file written at a temporaryPath into place under its final name (atomic rename). */
  async adopt(temporary: string, fileName: string): Promise<void> {
    if (!this.blobs) return rename(temporary, this.filePath(fileName));
    await this.blobs.put(blobKey(this.checkName(fileName)), createReadStream(temporary));
    await rm(temporary, { force: true });
  }

  private checkName(fileName: string): string {
    this.filePath(fileName);
    return fileName;
  }

  /** Every stored file under nar/, with its size and when it was last written (for garbage collection). */
  async *files(): AsyncGenerator<{ fileName: string; size: number; modifiedMs: number }> {
    if (this.blobs) {
      for await (const b of this.blobs.list('nar/')) {
        const fileName = b.key.slice('nar/'.length);
        if (FILE_NAME.test(fileName)) yield { fileName, size: b.size, modifiedMs: b.modifiedMs };
      }
      return;
    }
    const dir = await opendir(join(this.root, 'nar'));
    for await (const entry of dir) {
      if (!entry.isFile() || !FILE_NAME.test(entry.name)) continue;
      const s = await stat(join(this.root, 'nar', entry.name)).catch(() => undefined);
      if (s) yield { fileName: entry.name, size: s.size, modifiedMs: s.mtimeMs };
    }
  }

  async size(fileName: string): Promise<number | undefined> {
    if (this.blobs) return (await this.blobs.stat(blobKey(this.checkName(fileName))))?.size;
    const s = await stat(this.filePath(fileName)).catch(() => undefined);
    return s?.isFile() ? s.size : undefined;
  }

  /** NARs are files of this machine's nar/ directory (openStored, filePath); false with a blob store. */
  get servesLocalFiles(): boolean {
    return !this.blobs;
  }

  /** Streams a stored file, or a byte range of it (inclusive end, as HTTP ranges are). */
  read(fileName: string, range?: { start: number; end: number }): Readable {
    const path = this.filePath(fileName);
    if (!this.blobs) return createReadStream(path, { ...range, highWaterMark: READ_CHUNK_BYTES });
    // The store answers asynchronously; its failure (not found, unreachable) is the stream's.
    const out = new PassThrough();
    this.blobs.read(blobKey(fileName), range).then(
      (source) => pipeline(source, out, () => undefined),
      (err: unknown) => out.destroy(err as Error),
    );
    return out;
  }

  /**
   * A URL of the blob store's own that serves the file for a while (S3's presigned GET),
   * when the coordinator is set to redirect NAR downloads there; undefined: serve it here.
   */
  async readUrl(fileName: string): Promise<string | undefined> {
    if (!this.blobs || this.redirectSeconds <= 0) return undefined;
    return this.blobs.readUrl(blobKey(this.checkName(fileName)), this.redirectSeconds);
  }

  /**
   * A stored file opened for serving, with its size from the same descriptor: what is
   * streamed is the file that was measured, even if it is removed meanwhile. The caller
   * closes the handle. Only for NARs on the filesystem (see servesLocalFiles).
   */
  async openStored(fileName: string): Promise<OpenedFile | undefined> {
    if (this.blobs) throw new Error('openStored is for NARs on the filesystem; a blob store is read with read()');
    const handle = await open(this.filePath(fileName), 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'EISDIR') return undefined;
      throw err;
    });
    if (!handle) return undefined;
    try {
      const s = await handle.stat();
      if (s.isFile()) return { handle, size: s.size, ino: s.ino };
    } catch (err) {
      await handle.close();
      throw err;
    }
    await handle.close();
    return undefined;
  }

  async remove(fileName: string): Promise<void> {
    if (this.blobs) return this.blobs.delete(blobKey(this.checkName(fileName)));
    await rm(this.filePath(fileName), { force: true });
  }
}

const JOURNAL_ENTRY = 16; // two little-endian u64: stored, plain

async function readJournal(path: string): Promise<FrameRecord[]> {
  const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  });
  const frames: FrameRecord[] = [];
  // A torn last entry (crash while appending) is ignored: its frame is cut off too.
  for (let i = 0; i + JOURNAL_ENTRY <= bytes.length; i += JOURNAL_ENTRY) {
    frames.push({ stored: Number(bytes.readBigUInt64LE(i)), plain: Number(bytes.readBigUInt64LE(i + 8)) });
  }
  return frames;
}

/** What a staged upload asks of its storage when it ends. */
interface StagingEnds {
  commit(fileName: string): Promise<void>;
  discard(): Promise<void>;
  release(): void;
  /** The domain error for a write that found no space (the staged bytes are discarded first). */
  outOfSpace(err: unknown): Promise<Error>;
}

class FsStagedUpload implements StagedUpload {
  private readonly records: FrameRecord[];
  private stored: number;
  private plain: number;
  private ended = false;

  constructor(
    private readonly dataPath: string,
    private readonly data: FileHandle,
    private readonly journal: FileHandle,
    frames: FrameRecord[],
    private readonly ends: StagingEnds,
  ) {
    this.records = [...frames];
    this.stored = frames.reduce((n, f) => n + f.stored, 0);
    this.plain = frames.reduce((n, f) => n + f.plain, 0);
  }

  get plainOffset(): number {
    return this.plain;
  }

  get storedSize(): number {
    return this.stored;
  }

  get frames(): readonly FrameRecord[] {
    return this.records;
  }

  async appendFrames(frames: readonly StagedFrame[]): Promise<void> {
    if (frames.length === 0) return;
    try {
      await this.write(frames);
    } catch (err) {
      if (!isOutOfSpace(err)) throw err;
      // Not kept for a resume: the bytes staged so far would keep the disk full.
      await this.discard();
      throw await this.ends.outOfSpace(err);
    }
    for (const f of frames) {
      this.records.push({ stored: f.bytes.length, plain: f.plain });
      this.stored += f.bytes.length;
      this.plain += f.plain;
    }
  }

  private async write(frames: readonly StagedFrame[]): Promise<void> {
    const size = frames.reduce((n, f) => n + f.bytes.length, 0);
    const { bytesWritten } = await this.data.writev(frames.map((f) => f.bytes));
    // A regular file written short without an error: the filesystem filled up meanwhile.
    if (bytesWritten !== size) throw shortWrite(bytesWritten, size);
    const entries = Buffer.alloc(JOURNAL_ENTRY * frames.length);
    frames.forEach((f, i) => {
      entries.writeBigUInt64LE(BigInt(f.bytes.length), i * JOURNAL_ENTRY);
      entries.writeBigUInt64LE(BigInt(f.plain), i * JOURNAL_ENTRY + 8);
    });
    // The frames' bytes are written before the journal names them, so the journal
    // never records a frame the data file does not hold.
    const journaled = await this.journal.write(entries);
    if (journaled.bytesWritten !== entries.length) throw shortWrite(journaled.bytesWritten, entries.length);
  }

  async *readFrames(): AsyncIterable<Buffer> {
    if (this.records.length === 0) return;
    const handle = await open(this.dataPath, 'r');
    try {
      let position = 0;
      for (const f of this.records) {
        const buf = Buffer.alloc(f.stored);
        await handle.read(buf, 0, f.stored, position);
        position += f.stored;
        yield buf;
      }
    } finally {
      await handle.close();
    }
  }

  /**
   * Closes the files (once), then does `then` while still holding the key, then lets it
   * go. Ending twice does nothing more: the key may be another writer's by then.
   */
  private async end(then?: () => Promise<void>): Promise<void> {
    if (this.ended) return;
    try {
      await Promise.all([this.data.close(), this.journal.close()]);
      await then?.();
    } finally {
      this.ended = true;
      this.ends.release();
    }
  }

  commit(fileName: string): Promise<void> {
    return this.end(() => this.ends.commit(fileName));
  }

  discard(): Promise<void> {
    return this.end(() => this.ends.discard());
  }

  close(): Promise<void> {
    return this.end();
  }
}

/** What a fresh upload asks of its storage: its files when it needs them, and its ends. */
interface FreshStaging {
  /** Opens the staging files, emptied, as a staged upload with no frames. */
  spill(): Promise<StagedUpload>;
  /** Puts a one-frame upload into place whole and removes what an earlier attempt left. */
  commitWhole(frame: Uint8Array, fileName: string): Promise<void>;
  discard(): Promise<void>;
  release(): void;
}

/**
 * A fresh upload that holds its first frame in memory and becomes a staged file (spills)
 * when a second frame comes or when it is kept for a resume.
 */
class FreshStagedUpload implements StagedUpload {
  private first: StagedFrame | undefined;
  private spilled: StagedUpload | undefined;
  private ended = false;

  constructor(private readonly staging: FreshStaging) {}

  get plainOffset(): number {
    return this.spilled ? this.spilled.plainOffset : (this.first?.plain ?? 0);
  }

  get storedSize(): number {
    return this.spilled ? this.spilled.storedSize : (this.first?.bytes.length ?? 0);
  }

  get frames(): readonly FrameRecord[] {
    if (this.spilled) return this.spilled.frames;
    return this.first ? [{ stored: this.first.bytes.length, plain: this.first.plain }] : [];
  }

  async appendFrames(frames: readonly StagedFrame[]): Promise<void> {
    if (frames.length === 0) return;
    if (this.spilled) return this.spilled.appendFrames(frames);
    if (!this.first && frames.length === 1) {
      this.first = frames[0];
      return;
    }
    await this.spill();
    await this.spilled!.appendFrames(frames);
  }

  async *readFrames(): AsyncIterable<Buffer> {
    if (this.spilled) {
      yield* this.spilled.readFrames();
    } else if (this.first) {
      yield Buffer.from(this.first.bytes);
    }
  }

  /** Writes the frame held in memory to the staging files; from here on it is a staged file. */
  private async spill(): Promise<void> {
    this.spilled = await this.staging.spill();
    const first = this.first;
    this.first = undefined;
    if (first) await this.spilled.appendFrames([first]);
  }

  commit(fileName: string): Promise<void> {
    if (this.spilled) return this.spilled.commit(fileName);
    return this.end(() => this.staging.commitWhole(this.first?.bytes ?? new Uint8Array(0), fileName));
  }

  discard(): Promise<void> {
    if (this.spilled) return this.spilled.discard();
    return this.end(() => this.staging.discard());
  }

  async close(): Promise<void> {
    if (!this.spilled && !this.ended) {
      // Kept for a resume: what arrived is written out, as a staged file would hold it
      // (nothing arrived: the spill still empties what an earlier attempt left).
      try {
        await this.spill();
      } catch (err) {
        const spilled = this.spilled as StagedUpload | undefined; // set if the files opened
        await (spilled ? spilled.close() : this.end());
        throw err;
      }
    }
    await this.spilled?.close();
  }

  /** Does `then` while still holding the key, then lets it go (once). */
  private async end(then?: () => Promise<void>): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    try {
      await then?.();
    } finally {
      this.staging.release();
    }
  }
}
