// Parses a NAR from a stream of chunks cut anywhere into events, accepting exactly the
// archives `nix-store --dump` writes: any other byte sequence is refused with a NarError
// saying what was wrong, where in the archive and at which byte offset. Only canonical NARs
// pass, so a tree unpacked from an accepted NAR dumps back to the same bytes and hash.
import { ByteReader, type ByteSource } from './nar-byte-reader.js';
import {
  invalidNameReason,
  joinArchivePath,
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  MAX_TARGET_BYTES,
  MAX_TOKEN_BYTES,
  NAR_MAGIC,
  NarError,
  padding,
  type NarResult,
  type NarStream,
} from './nar-format.js';

export type { ByteSource } from './nar-byte-reader.js';

/** Where an event is: the path within the archive, '' for its root, with '/' between names. */
interface At {
  /** For people and most programs (names that are not UTF-8 are decoded lossily here). */
  path: string;
  /** The exact bytes, for creating the file. */
  pathBytes: Buffer;
}

export type NarEvent =
  | (At & { type: 'directory' })
  /** After all the entries of the directory at `path`. */
  | (At & { type: 'directory-end' })
  /** Followed by `contents` events carrying exactly `size` bytes in all (none if size is 0). */
  | (At & { type: 'regular'; executable: boolean; size: number })
  /** `chunk` may share memory with the source's chunk: copy it if it must outlive the next read. */
  | (At & { type: 'contents'; chunk: Buffer })
  | (At & { type: 'symlink'; target: string; targetBytes: Buffer });

/**
 * Parses the NAR in `source`. The events come as the bytes do (a consumer that stops reading
 * stops the source); `result` gives the SHA-256 and size of the whole stream once it has been
 * read to its end and found to be exactly one NAR.
 */
export function parseNar(source: ByteSource): NarStream<NarEvent> {
  let settle!: { resolve: (r: NarResult) => void; reject: (e: unknown) => void };
  const result = new Promise<NarResult>((resolve, reject) => (settle = { resolve, reject }));
  result.catch(() => {}); // the error also reaches the reader of the events
  const reader = new ByteReader(source);

  async function* events(): AsyncGenerator<NarEvent, void, undefined> {
    let complete = false;
    try {
      yield* new Parser(reader).archive();
      settle.resolve({ sha256: reader.digest(), size: reader.received });
      complete = true;
    } catch (err) {
      settle.reject(err);
      throw err;
    } finally {
      if (!complete) {
        // Failed, or the consumer left early: there is no result, and the source is let go.
        settle.reject(new NarError('the NAR was not read to its end'));
        await reader.close().catch(() => {});
      }
    }
  }
  return Object.assign(events(), { result }) as NarStream<NarEvent>;
}

/** One open directory: its place and the last entry name seen, to check order. */
interface Frame extends At {
  previous: Buffer | undefined;
}

class Parser {
  constructor(private readonly r: ByteReader) {}

  async *archive(): AsyncGenerator<NarEvent, void, undefined> {
    const root: At = { path: '', pathBytes: Buffer.alloc(0) };
    const magicAt = this.r.offset;
    const magic = await this.token(root, 'the NAR magic');
    if (magic !== NAR_MAGIC) throw new NarError(`not a NAR: it starts with ${show(magic)}, not "${NAR_MAGIC}"`, '', magicAt);

    // Directories nest without bound, so they are kept on an explicit stack, not the call stack.
    const stack: Frame[] = [];
    let node: At | undefined = root;
    for (;;) {
      if (node) {
        const dir = yield* this.node(node);
        if (dir) stack.push({ ...node, previous: undefined });
        else if (stack.length > 0) await this.expect(')', node, 'the end of the entry');
        node = undefined;
      }
      const dir = stack[stack.length - 1];
      if (!dir) break;
      const tokenAt = this.r.offset;
      const token = await this.token(dir, 'an entry or the end of the directory');
      if (token === ')') {
        stack.pop();
        yield { type: 'directory-end', path: dir.path, pathBytes: dir.pathBytes };
        if (stack.length > 0) await this.expect(')', dir, 'the end of the entry');
      } else if (token === 'entry') {
        node = await this.entry(dir);
      } else {
        throw new NarError(`expected "entry" or ")" in a directory, found ${show(token)}`, dir.path, tokenAt);
      }
    }

    const endAt = this.r.offset;
    if (!(await this.r.atEnd())) throw new NarError('trailing bytes after the end of the archive', undefined, endAt);
  }

  /** Reads `( name N node`, checking the name, and returns where the entry's node is. */
  private async entry(dir: Frame): Promise<At> {
    await this.expect('(', dir, 'the start of an entry');
    await this.expect('name', dir, 'the entry name');
    const nameAt = this.r.offset;
    const name = Buffer.from(await this.string(MAX_NAME_BYTES, dir, 'an entry name'));
    const bad = invalidNameReason(name);
    if (bad) throw new NarError(`invalid NAR: ${bad}`, dir.path, nameAt);
    if (dir.previous) {
      const order = Buffer.compare(name, dir.previous);
      if (order === 0) throw new NarError(`invalid NAR: the entry ${show(name.toString())} appears twice`, dir.path, nameAt);
      if (order < 0) {
        throw new NarError(`invalid NAR: the entry ${show(name.toString())} comes after ${show(dir.previous.toString())}; entries must be sorted by bytes`, dir.path, nameAt);
      }
    }
    dir.previous = name;
    const pathBytes = joinArchivePath(dir.pathBytes, name);
    if (pathBytes.length > MAX_PATH_BYTES) throw new NarError(`invalid NAR: a path within it is longer than ${MAX_PATH_BYTES} bytes`, dir.path, nameAt);
    const at: At = { path: pathBytes.toString(), pathBytes };
    await this.expect('node', at, 'the entry node');
    return at;
  }

  /** Reads a node up to its closing ")" (a directory: up to its type) and says if it is a directory. */
  private async *node(at: At): AsyncGenerator<NarEvent, boolean, undefined> {
    await this.expect('(', at, 'the start of a node');
    await this.expect('type', at, 'the node type');
    const typeAt = this.r.offset;
    const type = await this.token(at, 'the node type');
    switch (type) {
      case 'directory':
        yield { type: 'directory', ...at };
        return true;
      case 'symlink': {
        await this.expect('target', at, 'the symlink target', 'a symlink');
        const targetAt = this.r.offset;
        const targetBytes = Buffer.from(await this.string(MAX_TARGET_BYTES, at, 'a symlink target'));
        if (targetBytes.length === 0) throw new NarError('invalid NAR: a symlink with an empty target', at.path, targetAt);
        if (targetBytes.includes(0)) throw new NarError('invalid NAR: a symlink target containing a NUL byte', at.path, targetAt);
        await this.expect(')', at, 'the end of the symlink', 'a symlink');
        yield { type: 'symlink', ...at, target: targetBytes.toString(), targetBytes };
        return false;
      }
      case 'regular': {
        let fieldAt = this.r.offset;
        let field = await this.token(at, 'the file contents');
        const executable = field === 'executable';
        if (executable) {
          await this.expect('', at, 'the executable flag');
          fieldAt = this.r.offset;
          field = await this.token(at, 'the file contents');
        }
        if (field !== 'contents') throw unexpected(field, executable ? '"contents"' : '"executable" or "contents"', 'a regular file', at, fieldAt);
        const size = await this.length(at, 'the file size');
        yield { type: 'regular', ...at, executable, size };
        for await (const chunk of this.r.take(size, 'the file contents', at.path)) yield { type: 'contents', ...at, chunk };
        await this.padding(size, at, 'the file contents');
        await this.expect(')', at, 'the end of the file', 'a regular file');
        return false;
      }
      default:
        throw new NarError(`invalid NAR: unknown node type ${show(type)} (expected "regular", "symlink" or "directory")`, at.path, typeAt);
    }
  }

  /** Reads a token and fails unless it is `want`; `inside` names a node that cannot hold entries. */
  private async expect(want: string, at: At, what: string, inside?: string): Promise<void> {
    const tokenAt = this.r.offset;
    const got = await this.token(at, what);
    if (got !== want) throw unexpected(got, show(want), inside, at, tokenAt);
  }

  /** A short keyword of the format; a longer string is reported by its length, not read. */
  private async token(at: At, what: string): Promise<string | number> {
    const length = await this.length(at, what);
    if (length > MAX_TOKEN_BYTES) return length; // the caller fails; its bytes need not be read
    return (await this.framedBytes(length, at, what)).toString('latin1');
  }

  /** A string of at most `max` bytes; the result may share memory with the source. */
  private async string(max: number, at: At, what: string): Promise<Buffer> {
    const lengthAt = this.r.offset;
    const length = await this.length(at, what);
    if (length > max) throw new NarError(`invalid NAR: ${what} of ${length} bytes (at most ${max})`, at.path, lengthAt);
    return this.framedBytes(length, at, what);
  }

  private async framedBytes(length: number, at: At, what: string): Promise<Buffer> {
    const bytes = await this.r.bytes(length, what, at.path);
    await this.padding(length, at, what);
    return bytes;
  }

  private async padding(length: number, at: At, what: string): Promise<void> {
    const n = padding(length);
    if (n === 0) return;
    const padAt = this.r.offset;
    const pad = await this.r.bytes(n, `the padding after ${what}`, at.path);
    if (pad.some((b) => b !== 0)) throw new NarError(`invalid NAR: non-zero padding after ${what}`, at.path, padAt);
  }

  /** A 64-bit little-endian length; above 2^53 it cannot be a real one (nor a JS number). */
  private async length(at: At, what: string): Promise<number> {
    const lengthAt = this.r.offset;
    const field = await this.r.bytes(8, `the length of ${what}`, at.path);
    const low = field.readUInt32LE(0);
    const high = field.readUInt32LE(4);
    if (high > 0x1f_ffff) throw new NarError(`invalid NAR: absurd length ${field.readBigUInt64LE(0)} for ${what}`, at.path, lengthAt);
    return high * 0x1_0000_0000 + low;
  }
}

/** A token in a message: quoted, or its length if it was too long to be a keyword. */
function show(token: string | number): string {
  return typeof token === 'number' ? `a string of ${token} bytes` : JSON.stringify(token);
}

function unexpected(got: string | number, want: string, inside: string | undefined, at: At, offset: number): NarError {
  // The usual way to put an entry where no directory is: say that, not just "unexpected token".
  if (got === 'entry' && inside) return new NarError(`invalid NAR: an entry inside ${inside}; only a directory has entries`, at.path, offset);
  return new NarError(`invalid NAR: expected ${want}${inside ? ` in ${inside}` : ''}, found ${show(got)}`, at.path, offset);
}
