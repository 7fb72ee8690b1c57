// `kiln cache export DIR`: the coordinator's binary cache as files in the layout Nix and
// Guix read from a file:// or plain HTTP cache (nix-cache-info, <hash>.narinfo, nar/…),
// for nginx, a CDN origin or another machine to serve. Incremental: the coordinator lists
// its paths with a version of each narinfo, and only new or changed ones are fetched
// over its HTTP cache; paths it no longer holds are removed. Every file is written to a
// temporary name and renamed into place, a NAR before the narinfo naming it, and a
// narinfo removed before its NARs, so a client reading DIR meanwhile never finds a
// narinfo whose NAR is missing.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Hash } from '../store/hash.js';
import { parseNarInfo } from '../store/narinfo.js';
import type { AdminClient } from './admin-client.js';
import { bookkeepingDir, Journal, readState, readStateFile, StateWriter, tempDir, type ExportedPath, type JournalEntry } from './export-state.js';
import { takeExportLock } from './export-lock.js';

export interface ExportOptions {
  client: Pick<AdminClient, 'listCachePaths'>;
  /** The coordinator's HTTP cache, where narinfos and NARs are fetched from. */
  cacheUrl: string;
  dir: string;
  /** Paths fetched at once. */
  concurrency?: number;
  pageSize?: number;
  /** Told of a listed path left out: its narinfo or a NAR was gone when fetched. */
  warn?: (message: string) => void;
}

export interface ExportSummary {
  /** Paths whose narinfo (or NARs) this run wrote. */
  written: number;
  /** Paths removed from DIR: the coordinator no longer serves them. */
  removed: number;
  unchanged: number;
  /** Bytes of the files written. */
  bytes: number;
  narsWritten: number;
  narsRemoved: number;
}

export class ExportError extends Error {
  override name = 'ExportError';
}

/** A path the coordinator listed but no longer serves (collected since): as if not listed. */
class Vanished extends Error {}

const NAR_URL = /^nar\/([0-9a-z]{52}\.nar(?:\.[a-z0-9]{1,8})?)$/;

export async function exportCache(opts: ExportOptions): Promise<ExportSummary> {
  const { dir } = opts;
  // The listing's first page before anything is made: an unreachable coordinator changes nothing.
  const pages = listingPages(opts);
  const first = await pages.next();
  await mkdir(join(dir, 'nar'), { recursive: true });
  await mkdir(bookkeepingDir(dir), { recursive: true });
  const unlock = await takeExportLock(bookkeepingDir(dir));
  try {
    // Left by a run that was killed: never renamed into place, so never served.
    await rm(tempDir(dir), { recursive: true, force: true });
    await mkdir(tempDir(dir));
    return await new ExportRun(opts).run(first, pages);
  } finally {
    await unlock();
  }
}

type ListedPage = { hashPart: string; version: string }[];

/** The coordinator's listing, a page at a time, checked to be in the order the state is kept in. */
async function* listingPages(opts: ExportOptions): AsyncGenerator<ListedPage> {
  let token = '';
  let last = '';
  do {
    const res = await opts.client.listCachePaths({ pageSize: opts.pageSize ?? 0, pageToken: token });
    for (const p of res.paths) {
      // The merge with the state file needs the order the state is written in.
      if (p.hashPart <= last) throw new ExportError(`the coordinator listed ${p.hashPart} after ${last}: not in ascending order`);
      last = p.hashPart;
    }
    yield res.paths.map((p) => ({ hashPart: p.hashPart, version: p.version }));
    token = res.nextPageToken;
  } while (token);
}

class ExportRun {
  private readonly summary: ExportSummary = { written: 0, removed: 0, unchanged: 0, bytes: 0, narsWritten: 0, narsRemoved: 0 };
  /** NAR files that may have lost the last narinfo naming them; removed at the end unless the new state names them. */
  private readonly narCandidates = new Set<string>();
  /** Narinfos an interrupted run wrote; removed at the end unless the new state has them. */
  private readonly narinfoCandidates = new Set<string>();
  private readonly fetching = new Map<string, Promise<boolean>>();
  private temps = 0;
  private journal!: Journal;
  private state!: StateWriter;

  constructor(private readonly opts: ExportOptions) {}

  private get dir(): string {
    return this.opts.dir;
  }

  async run(first: IteratorResult<ListedPage>, pages: AsyncGenerator<ListedPage>): Promise<ExportSummary> {
    await this.writeIfChanged('nix-cache-info', Buffer.from(await this.fetchText('nix-cache-info')));
    const { journal, left } = await Journal.open(this.dir);
    this.journal = journal;
    for (const e of left) (e.kind === 'nar' ? this.narCandidates : this.narinfoCandidates).add(e.name);
    this.state = await StateWriter.create(this.dir);
    const old = readState(this.dir);
    try {
      let previous = await old.next();
      for (let page = first; !page.done; page = await pages.next()) {
        const changed: { hashPart: string; version: string; old?: ExportedPath }[] = [];
        for (const listed of page.value) {
          while (!previous.done && previous.value.hashPart < listed.hashPart) {
            await this.remove(previous.value);
            previous = await old.next();
          }
          const before = !previous.done && previous.value.hashPart === listed.hashPart ? previous.value : undefined;
          if (before) previous = await old.next();
          changed.push({ ...listed, old: before });
        }
        // Fetched a few at a time; the state is written in listing order.
        const results = await mapLimit(changed, this.opts.concurrency ?? 4, (c) => (c.old?.version === c.version ? this.unchanged(c.old) : this.update(c)));
        for (const r of results) if (r) await this.state.add(r);
      }
      for (; !previous.done; previous = await old.next()) await this.remove(previous.value);
      await this.sweep(await this.state.finish());
      await this.state.commit();
      await this.journal.clear();
    } catch (err) {
      await old.return(undefined);
      await this.state.abandon();
      await this.journal.close();
      throw err;
    }
    return this.summary;
  }

  private unchanged(p: ExportedPath): Promise<ExportedPath> {
    this.summary.unchanged++;
    return Promise.resolve(p);
  }

  /** A new or changed path: its NARs, then its narinfo. Undefined when it is gone from the coordinator meanwhile. */
  private async update(c: { hashPart: string; version: string; old?: ExportedPath }): Promise<ExportedPath | undefined> {
    const nars: string[] = [];
    try {
      const text = await this.fetchText(`${c.hashPart}.narinfo`);
      const info = parseNarInfo(text);
      let wrote = false;
      for (const file of info.files) {
        const name = NAR_URL.exec(file.url)?.[1];
        if (!name) throw new ExportError(`the narinfo of ${info.storePath} names ${JSON.stringify(file.url)}, not a file under nar/ (kiln serves no other)`);
        nars.push(name);
        if (await this.narOnce(name, file.fileHash, file.fileSize)) wrote = true;
      }
      if (await this.writeIfChanged(`${c.hashPart}.narinfo`, Buffer.from(text), { kind: 'narinfo', name: c.hashPart })) wrote = true;
      for (const name of c.old?.nars ?? []) if (!nars.includes(name)) this.narCandidates.add(name);
      if (wrote) this.summary.written++;
      else this.summary.unchanged++;
      return { hashPart: c.hashPart, version: c.version, nars };
    } catch (err) {
      if (!(err instanceof Vanished)) throw err;
      this.opts.warn?.(`left out ${c.hashPart}: the coordinator answered 404 for ${err.message} (collected since it was listed?)`);
      // NARs fetched before one was missing: named by nothing unless another path names them.
      for (const name of nars) this.narCandidates.add(name);
      if (c.old) await this.remove(c.old);
      return undefined;
    }
  }

  /** The narinfo first, so that nothing points at the NARs while they go. */
  private async remove(p: ExportedPath): Promise<void> {
    await unlinkIfThere(join(this.dir, `${p.hashPart}.narinfo`));
    for (const name of p.nars) this.narCandidates.add(name);
    this.summary.removed++;
  }

  /** Removes the candidates the new state does not name: narinfos first, then NARs. */
  private async sweep(newState: string): Promise<void> {
    if (this.narCandidates.size === 0 && this.narinfoCandidates.size === 0) return;
    for await (const p of readStateFile(newState)) {
      this.narinfoCandidates.delete(p.hashPart);
      for (const name of p.nars) this.narCandidates.delete(name);
    }
    for (const hashPart of this.narinfoCandidates) await unlinkIfThere(join(this.dir, `${hashPart}.narinfo`));
    for (const name of this.narCandidates) if (await unlinkIfThere(join(this.dir, 'nar', name))) this.summary.narsRemoved++;
  }

  /** fetchNar, once for paths of a page that share a NAR file. */
  private narOnce(name: string, fileHash: string | undefined, fileSize: number | undefined): Promise<boolean> {
    let pending = this.fetching.get(name);
    if (!pending) {
      pending = this.fetchNar(name, fileHash, fileSize).finally(() => this.fetching.delete(name));
      this.fetching.set(name, pending);
    }
    return pending;
  }

  /** Downloads a NAR file unless DIR has it (files are named by their hash); true when it wrote one. */
  private async fetchNar(name: string, fileHash: string | undefined, fileSize: number | undefined): Promise<boolean> {
    const target = join(this.dir, 'nar', name);
    const there = await stat(target).catch(() => undefined);
    if (there && fileSize !== undefined && there.size === fileSize) return false;
    const res = await this.get(`nar/${name}`);
    const temp = join(tempDir(this.dir), `${name}-${this.temps++}`);
    const sha256 = createHash('sha256');
    let size = 0;
    const measure = new Transform({
      transform(chunk: Buffer, _enc, done) {
        sha256.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(Readable.fromWeb(res.body! as WebReadableStream<Uint8Array>), measure, createWriteStream(temp));
      const url = `${this.opts.cacheUrl.replace(/\/$/, '')}/nar/${name}`;
      if (fileSize !== undefined && size !== fileSize) throw new ExportError(`${url} has ${size} bytes, not the ${fileSize} its narinfo declares`);
      if (fileHash !== undefined) {
        const declared = Hash.parse(fileHash);
        const got = new Hash('sha256', sha256.digest());
        if (declared.algorithm !== 'sha256' || !declared.equals(got)) throw new ExportError(`${url} hashes to ${got.toString()}, not the ${fileHash} its narinfo declares`);
      }
      await this.journal.note({ kind: 'nar', name });
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    this.summary.narsWritten++;
    this.summary.bytes += size;
    return true;
  }

  /** Writes DIR/name atomically unless it holds these bytes already; true when it wrote. */
  private async writeIfChanged(name: string, bytes: Buffer, note?: JournalEntry): Promise<boolean> {
    const target = join(this.dir, name);
    const current = await readFile(target).catch(() => undefined);
    if (current?.equals(bytes)) return false;
    const temp = join(tempDir(this.dir), `${name}-${this.temps++}`);
    await writeFile(temp, bytes);
    if (note) await this.journal.note(note);
    await rename(temp, target);
    this.summary.bytes += bytes.length;
    return true;
  }

  private async fetchText(path: string): Promise<string> {
    return (await this.get(path)).text();
  }

  private async get(path: string): Promise<Response> {
    const url = `${this.opts.cacheUrl.replace(/\/$/, '')}/${path}`;
    const res = await fetch(url).catch((err: unknown) => {
      const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
      throw new ExportError(`cannot reach the coordinator's cache at ${url}: ${cause}`, { cause: err });
    });
    if (res.status === 404 && path !== 'nix-cache-info') {
      await res.body?.cancel();
      throw new Vanished(url);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new ExportError(`the coordinator's cache answered ${res.status} ${res.statusText} for ${url}`);
    }
    return res;
  }
}

async function unlinkIfThere(file: string): Promise<boolean> {
  try {
    await unlink(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * `f` over `items`, at most `limit` at once, results in the items' order. After a failure
 * no item is started, and the ones running are waited for (their files are in place and
 * journaled before the error is thrown).
 */
async function mapLimit<T, R>(items: readonly T[], limit: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        results[i] = await f(items[i]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const failure = settled.find((s) => s.status === 'rejected');
  if (failure) throw failure.reason;
  return results;
}
