// The blob store on a filesystem directory: a blob is the file at <root>/<key>. Writes go
// to <root>/.staging/ and are renamed into place whole. A staged upload is two files there,
// its data and a journal of its complete parts (each size recorded after the part's bytes
// are written), so that a writer that died leaves exactly its whole parts behind.
import { randomUUID } from 'node:crypto';
import { mkdir, open, opendir, readFile, rename, rm, stat, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { isOutOfSpace } from './disk-space.js';
import {
  BlobStoreError,
  checkKey,
  checkPartSize,
  checkPrefix,
  checkRange,
  PartedUpload,
  WriterGuard,
  type BlobInfo,
  type BlobStore,
  type ByteRange,
  type StagedBlob,
  type StagedInfo,
} from './blob-store.js';

const STAGING = '.staging';
const JOURNAL_ENTRY = 8; // one little-endian u64 per complete part
/** A staged upload's files: `<base64url key>.<upload id>.data` and `.parts`. */
const STAGED_FILE = /^([A-Za-z0-9_-]+)\.([0-9a-f-]{36})\.(data|parts)$/;

export class FsBlobStore implements BlobStore {
  private readonly writers = new WriterGuard();

  private constructor(readonly root: string) {}

  static async open(root: string): Promise<FsBlobStore> {
    await mkdir(join(root, STAGING), { recursive: true });
    return new FsBlobStore(root);
  }

  get location(): string {
    return this.root;
  }

  private path(key: string): string {
    return join(this.root, checkKey(key));
  }

  private stagedPaths(key: string, uploadId: string): { data: string; parts: string } {
    const base = join(this.root, STAGING, `${Buffer.from(key).toString('base64url')}.${uploadId}`);
    return { data: `${base}.data`, parts: `${base}.parts` };
  }

  /** Turns a write's ENOSPC into storage's out_of_space; other errors pass. */
  private failure(err: unknown, what: string): unknown {
    if (!isOutOfSpace(err)) return err;
    return new BlobStoreError('out_of_space', `out of space writing ${what} under ${this.root}: free space there`, { cause: err });
  }

  async put(key: string, body: AsyncIterable<Uint8Array> | Uint8Array): Promise<void> {
    const final = this.path(key);
    const temp = join(this.root, STAGING, `${randomUUID()}.put`);
    try {
      if (body instanceof Uint8Array) {
        await writeFile(temp, body);
      } else {
        const handle = await open(temp, 'w');
        try {
          for await (const chunk of body) await writeAll(handle, chunk);
        } finally {
          await handle.close();
        }
      }
      await mkdir(dirname(final), { recursive: true });
      await rename(temp, final);
    } catch (err) {
      await rm(temp, { force: true });
      throw this.failure(err, key);
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const handle = await open(this.path(key), 'r').catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOENT' || err.code === 'ENOTDIR' ? new BlobStoreError('not_found', `no blob ${key} in ${this.root}`, { cause: err }) : err;
    });
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new BlobStoreError('not_found', `no blob ${key} in ${this.root}`);
      checkRange(key, range, info.size);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
  }

  async stat(key: string): Promise<BlobInfo | undefined> {
    const info = await stat(this.path(key)).catch(() => undefined);
    return info?.isFile() ? { key, size: info.size, modifiedMs: info.mtimeMs } : undefined;
  }

  async delete(key: string): Promise<void> {
    await rm(this.path(key), { force: true });
  }

  async *list(prefix: string): AsyncGenerator<BlobInfo> {
    checkPrefix(prefix);
    // Walk only the directory the prefix names (and below it), as S3 lists by prefix.
    const slash = prefix.lastIndexOf('/');
    yield* this.walk(slash < 0 ? '' : prefix.slice(0, slash + 1), prefix);
  }

  private async *walk(dir: string, prefix: string): AsyncGenerator<BlobInfo> {
    const handle = await opendir(join(this.root, dir)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
      throw err;
    });
    if (!handle) return;
    const entries: { name: string; isDir: boolean }[] = [];
    for await (const entry of handle) {
      if (entry.name.startsWith('.')) continue; // the staging directory, and nothing a key can name
      entries.push({ name: entry.name, isDir: entry.isDirectory() });
    }
    // S3's order: keys sorted by their bytes, so "a/b" (a directory's files) sorts by "a/".
    const sortKey = (e: { name: string; isDir: boolean }) => (e.isDir ? `${e.name}/` : e.name);
    entries.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
    for (const entry of entries) {
      const key = dir + entry.name;
      if (entry.isDir) {
        const sub = `${key}/`;
        if (sub.startsWith(prefix) || prefix.startsWith(sub)) yield* this.walk(sub, prefix);
      } else if (key.startsWith(prefix)) {
        const info = await stat(join(this.root, key)).catch(() => undefined);
        if (info?.isFile()) yield { key, size: info.size, modifiedMs: info.mtimeMs };
      }
    }
  }

  async readUrl(): Promise<undefined> {
    return undefined;
  }

  close(): void {}

  private async stagedOf(key: string): Promise<StagedInfo[]> {
    const found: StagedInfo[] = [];
    for await (const s of this.listStaged('')) if (s.key === key) found.push(s);
    return found;
  }

  async startStaged(key: string, opts: { partSize?: number } = {}): Promise<StagedBlob> {
    const partSize = checkPartSize(opts.partSize);
    this.writers.hold(key);
    try {
      for (const old of await this.stagedOf(key)) await this.removeStaged(key, old.uploadId);
      const uploadId = randomUUID();
      const paths = this.stagedPaths(key, uploadId);
      const data = await open(paths.data, 'w');
      const journal = await open(paths.parts, 'w').catch(async (err: unknown) => {
        await data.close();
        throw err;
      });
      return new FsStagedBlob(this, key, uploadId, data, journal, [], partSize);
    } catch (err) {
      this.writers.release(key);
      throw this.failure(err, `the staged upload of ${key}`);
    }
  }

  async resumeStaged(key: string, opts: { partSize?: number } = {}): Promise<StagedBlob | undefined> {
    const partSize = checkPartSize(opts.partSize);
    this.writers.hold(key);
    try {
      const [found] = await this.stagedOf(key);
      if (!found) {
        this.writers.release(key);
        return undefined;
      }
      const paths = this.stagedPaths(key, found.uploadId);
      const parts = await readJournal(paths.parts);
      const size = parts.reduce((n, p) => n + p, 0);
      const existing = await stat(paths.data).catch(() => undefined);
      if ((existing?.size ?? 0) < size) {
        // The journal names bytes the data file lacks: neither can be trusted.
        await this.removeStaged(key, found.uploadId);
        this.writers.release(key);
        return undefined;
      }
      // A part cut off half way (written, never journaled) is dropped.
      if (existing && existing.size > size) await truncate(paths.data, size);
      return new FsStagedBlob(this, key, found.uploadId, await open(paths.data, 'a'), await open(paths.parts, 'a'), parts, partSize);
    } catch (err) {
      this.writers.release(key);
      throw err;
    }
  }

  async *listStaged(prefix: string): AsyncGenerator<StagedInfo> {
    checkPrefix(prefix);
    const handle = await opendir(join(this.root, STAGING));
    const found: StagedInfo[] = [];
    for await (const entry of handle) {
      const m = STAGED_FILE.exec(entry.name);
      if (!m || m[3] !== 'parts') continue;
      const key = Buffer.from(m[1]!, 'base64url').toString();
      if (!key.startsWith(prefix)) continue;
      const info = await stat(join(this.root, STAGING, entry.name)).catch(() => undefined);
      if (info) found.push({ key, uploadId: m[2]!, startedMs: info.birthtimeMs || info.ctimeMs });
    }
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.startedMs - b.startedMs));
    yield* found;
  }

  /** @internal for FsStagedBlob */
  async removeStaged(key: string, uploadId: string): Promise<void> {
    const paths = this.stagedPaths(key, uploadId);
    await rm(paths.data, { force: true });
    await rm(paths.parts, { force: true });
  }

  /** @internal for FsStagedBlob */
  async publishStaged(key: string, uploadId: string): Promise<void> {
    const paths = this.stagedPaths(key, uploadId);
    const final = this.path(key);
    await mkdir(dirname(final), { recursive: true });
    await rename(paths.data, final);
    await rm(paths.parts, { force: true });
  }

  /** @internal for FsStagedBlob */
  release(key: string): void {
    this.writers.release(key);
  }

  /** @internal for FsStagedBlob */
  outOfSpace(err: unknown, key: string): unknown {
    return this.failure(err, `the staged upload of ${key}`);
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done);
    // A regular file written short with no error: the filesystem filled up meanwhile.
    if (bytesWritten === 0) throw Object.assign(new Error('no byte written'), { code: 'ENOSPC' });
    done += bytesWritten;
  }
}

async function readJournal(path: string): Promise<number[]> {
  const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  });
  const parts: number[] = [];
  // A torn last entry (a crash while appending) is ignored: its part is cut off too.
  for (let i = 0; i + JOURNAL_ENTRY <= bytes.length; i += JOURNAL_ENTRY) parts.push(Number(bytes.readBigUInt64LE(i)));
  return parts;
}

class FsStagedBlob extends PartedUpload {
  private readonly sizes: number[];
  private total: number;

  constructor(
    private readonly store: FsBlobStore,
    key: string,
    uploadId: string,
    private readonly data: FileHandle,
    private readonly journal: FileHandle,
    parts: number[],
    partSize: number,
  ) {
    super(key, uploadId, partSize, () => store.release(key));
    this.sizes = [...parts];
    this.total = parts.reduce((n, p) => n + p, 0);
  }

  get size(): number {
    return this.total;
  }

  get parts(): readonly number[] {
    return this.sizes;
  }

  protected async storePart(part: Buffer): Promise<void> {
    try {
      await writeAll(this.data, part);
      // The part's bytes are written before the journal names them.
      const entry = Buffer.alloc(JOURNAL_ENTRY);
      entry.writeBigUInt64LE(BigInt(part.length));
      await writeAll(this.journal, entry);
    } catch (err) {
      // Out of space: the parts kept would keep the disk full, so nothing is kept.
      if (isOutOfSpace(err)) await this.end(() => this.drop());
      throw this.store.outOfSpace(err, this.key);
    }
    this.sizes.push(part.length);
    this.total += part.length;
  }

  protected publish(): Promise<void> {
    return this.store.publishStaged(this.key, this.uploadId);
  }

  protected drop(): Promise<void> {
    return this.store.removeStaged(this.key, this.uploadId);
  }

  protected override async closeHandles(): Promise<void> {
    await Promise.all([this.data.close(), this.journal.close()]);
  }
}
