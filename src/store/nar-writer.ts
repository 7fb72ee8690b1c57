// Serialises a file system path to a NAR, byte for byte as `nix-store --dump` does, as a
// stream of ~1 MiB chunks, hashing it (SHA-256) and counting it on the way.
//
// Metadata calls (lstat, readdir, readlink) and reads of small files are synchronous: through
// libuv's thread pool each costs ~50 µs against ~10 µs inline, which would make a tree of many
// small files several times slower than Nix. They return from the page cache in microseconds,
// and the walk gives the event loop a turn at least every EVENT_LOOP_SLICE_MS. Large files are
// read asynchronously, straight into the output chunk, so that a slow disk does not stall the
// event loop and no file is ever held whole in memory.
import { createHash } from 'node:crypto';
import { closeSync, constants, lstatSync, openSync, read, readdirSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { promisify } from 'node:util';
import { ChunkBuilder } from './nar-chunks.js';
import { joinArchivePath, NarError, padding, type NarResult, type NarStream } from './nar-format.js';
import { CLOSE, CONTENTS, DIRECTORY, ENTRY, EXECUTABLE, MAGIC, NODE, REGULAR, SYMLINK } from './nar-tokens.js';

export interface DumpOptions {
  /** Size of the chunks the stream yields (the last may be shorter). Default 1 MiB. */
  chunkSize?: number;
  /** Stops the walk; the stream then throws the signal's reason. */
  signal?: AbortSignal;
}

const DEFAULT_CHUNK_SIZE = 1 << 20;
/** Files up to this size are read with one synchronous call (see the module comment). */
const SYNC_READ_LIMIT = 256 << 10;
const EVENT_LOOP_SLICE_MS = 10;

const readAsync = promisify(read);

export interface DumpStream extends NarStream<Buffer> {
  /**
   * Gives back a chunk this stream yielded that nothing uses any more (nor ever will: the
   * stream fills it again). Optional; it spares the page faults of fresh memory.
   */
  recycle(chunk: Buffer): void;
}

/**
 * Streams the NAR of `path` (a regular file, symlink or directory; a symlink is archived as
 * itself, not followed). The walk starts when the stream is first read and advances only as
 * it is read: a consumer that stops reading stops the walk, and leaving the loop early closes
 * any open file. `result` gives the NAR's SHA-256 and size once the last chunk is read.
 */
export function dumpPath(path: string | Buffer, options: DumpOptions = {}): DumpStream {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < 8) throw new RangeError(`chunkSize must be an integer ≥ 8, not ${chunkSize}`);
  let settle!: { resolve: (r: NarResult) => void; reject: (e: unknown) => void };
  const result = new Promise<NarResult>((resolve, reject) => (settle = { resolve, reject }));
  result.catch(() => {}); // the error also reaches the reader of the stream
  const root = typeof path === 'string' ? Buffer.from(path) : path;
  const walker = new Walker(chunkSize, options.signal);

  async function* chunks(): AsyncGenerator<Buffer, void, undefined> {
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of walker.archive(root)) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
      settle.resolve({ sha256: hash.digest(), size });
    } catch (err) {
      settle.reject(err);
      throw err;
    } finally {
      // A no-op once settled above; otherwise the reader left early and there is no result.
      settle.reject(new NarError(`the NAR of ${root.toString()} was not read to its end`));
    }
  }
  return Object.assign(chunks(), { result, recycle: (chunk: Buffer) => walker.recycle(chunk) }) as DumpStream;
}

/** The SHA-256 and size of the NAR of `path`, without keeping the archive. */
export async function hashPath(path: string | Buffer, options: DumpOptions = {}): Promise<NarResult> {
  const nar = dumpPath(path, options);
  // Each chunk is hashed before it is yielded and not needed after: its memory is filled again.
  for await (const chunk of nar) nar.recycle(chunk);
  return nar.result;
}

class Walker {
  private readonly out: ChunkBuilder;
  private sliceStart = performance.now();

  constructor(
    chunkSize: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.out = new ChunkBuilder(chunkSize);
  }

  recycle(chunk: Buffer): void {
    this.out.recycle(chunk);
  }

  async *archive(root: Buffer): AsyncGenerator<Buffer, void, undefined> {
    this.out.raw(MAGIC);
    yield* this.node(root, Buffer.alloc(0), lstatSync(root));
    const rest = this.out.takeRest();
    if (rest) yield rest;
  }

  /**
   * Hands on the full chunks, after giving the event loop a turn if the walk has held it for
   * a slice (called after every entry: a directory of tiny files fills no chunk for a while).
   */
  private async *flush(): AsyncGenerator<Buffer, void, undefined> {
    if (performance.now() - this.sliceStart > EVENT_LOOP_SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.sliceStart = performance.now();
    }
    this.signal?.throwIfAborted();
    if (!this.out.hasReady) return;
    for (const chunk of this.out.takeReady()) yield chunk;
  }

  private async *node(path: Buffer, archivePath: Buffer, st: Stats): AsyncGenerator<Buffer, void, undefined> {
    if (st.isFile()) {
      this.out.raw(REGULAR);
      // Nix looks at the owner's execute bit only.
      if (st.mode & 0o100) this.out.raw(EXECUTABLE);
      this.out.raw(CONTENTS);
      this.out.length(st.size);
      yield* this.contents(path, archivePath, st.size);
      this.out.zeros(padding(st.size));
      this.out.raw(CLOSE);
    } else if (st.isSymbolicLink()) {
      this.out.raw(SYMLINK);
      this.out.framed(readlinkSync(path, { encoding: 'buffer' }));
      this.out.raw(CLOSE);
    } else if (st.isDirectory()) {
      this.out.raw(DIRECTORY);
      // Nix keeps entries in a std::map<std::string, …>: ordered by unsigned bytes, not by locale.
      const names = readdirSync(path, { encoding: 'buffer' }).sort(Buffer.compare);
      for (const name of names) {
        this.out.raw(ENTRY);
        this.out.framed(name);
        this.out.raw(NODE);
        const child = Buffer.concat([path, SLASH, name]);
        yield* this.node(child, joinArchivePath(archivePath, name), lstatSync(child));
        this.out.raw(CLOSE);
        yield* this.flush();
      }
      this.out.raw(CLOSE);
    } else {
      throw new NarError(`${path.toString()} is ${kindOf(st)}; a NAR holds only regular files, symlinks and directories`, archivePath.toString());
    }
    yield* this.flush();
  }

  private async *contents(path: Buffer, archivePath: Buffer, size: number): AsyncGenerator<Buffer, void, undefined> {
    // O_NOFOLLOW: lstat said regular file; if it was swapped for a symlink since, fail rather than follow.
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    // A large file's next read, started before the chunk just filled is handed on, so the
    // thread pool reads while this thread hashes and the consumer works.
    let pending: Promise<number> | undefined;
    const readInto = (done: number): number | Promise<number> => {
      const { buffer, offset, length } = this.out.space();
      const want = Math.min(length, size - done);
      if (size <= SYNC_READ_LIMIT) return readSync(fd, buffer, offset, want, done);
      return readAsync(fd, buffer, offset, want, done).then((r) => r.bytesRead);
    };
    try {
      let done = 0;
      while (done < size) {
        const n = await (pending ?? readInto(done));
        pending = undefined;
        if (n === 0) throw new NarError(`${path.toString()} shrank while it was being archived (read ${done} of ${size} bytes)`, archivePath.toString());
        this.out.advance(n);
        done += n;
        if (this.out.hasReady && done < size && size > SYNC_READ_LIMIT) {
          pending = readInto(done) as Promise<number>;
          // Its failure is thrown where it is awaited; until then it must not count as unhandled.
          pending.catch(() => {});
        }
        yield* this.flush();
      }
    } finally {
      // Closing under a read still in flight could hand its descriptor to someone else's open.
      await pending?.catch(() => {});
      closeSync(fd);
    }
  }
}

const SLASH = Buffer.from('/');

function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'of an unknown file type';
}
