// What the NAR format (`nix-archive-1`, Nix's src/libutil/archive.cc) fixes, shared by the
// writer and the parser: how a string is framed, the limits kiln enforces, the one error class.

/** The SHA-256 and byte count of a NAR, as a narinfo's NarHash and NarSize declare them. */
export interface NarResult {
  /** The 32-byte SHA-256 digest of the archive's bytes. */
  readonly sha256: Buffer;
  /** The archive's length in bytes. */
  readonly size: number;
}

/** An async iterable of a NAR's bytes or events whose hash and size are known when it ends. */
export interface NarStream<T> extends AsyncIterable<T> {
  /**
   * Settles once the stream has been read to its end: with the hash and size, or with the
   * error that ended it. Never rejects unobserved: awaiting it is optional.
   */
  readonly result: Promise<NarResult>;
}

/**
 * A NAR that is malformed, or a tree that cannot be put in one. `path` is the path within the
 * archive ('' for its root) and `offset` the byte offset in the archive where the fault was
 * found, when they are known.
 */
export class NarError extends Error {
  override name = 'NarError';
  constructor(
    message: string,
    readonly path?: string,
    readonly offset?: number,
    options?: ErrorOptions,
  ) {
    super(describe(message, path, offset), options);
  }
}

function describe(message: string, path: string | undefined, offset: number | undefined): string {
  const where: string[] = [];
  if (path !== undefined) where.push(`at ${path === '' ? 'the archive root' : JSON.stringify(path)}`);
  if (offset !== undefined) where.push(`byte offset ${offset}`);
  return where.length === 0 ? message : `${message} (${where.join(', ')})`;
}

export const NAR_MAGIC = 'nix-archive-1';

/** Linux's NAME_MAX: no file system kiln unpacks into takes a longer name. */
export const MAX_NAME_BYTES = 255;
/** Linux's PATH_MAX, for symlink targets and for whole paths within an archive. */
export const MAX_TARGET_BYTES = 4096;
export const MAX_PATH_BYTES = 4096;
/** The longest keyword of the format ("nix-archive-1"); a longer token cannot be one. */
export const MAX_TOKEN_BYTES = 16;

/** Zero bytes that follow a string of `length` bytes up to the next multiple of 8. */
export function padding(length: number): number {
  return (8 - (length % 8)) % 8;
}

/** The framed size of a string of `length` bytes: length field, bytes, padding. */
export function framedLength(length: number): number {
  return 8 + length + padding(length);
}

/**
 * Why a directory entry name cannot be in a NAR, or undefined if it can. Nix refuses the same
 * names when it restores; they are what would let an archive write outside its target.
 */
export function invalidNameReason(name: Uint8Array): string | undefined {
  if (name.length === 0) return 'an empty entry name';
  if (name.length > MAX_NAME_BYTES) return `an entry name of ${name.length} bytes (at most ${MAX_NAME_BYTES})`;
  if (name.length <= 2 && name[0] === 0x2e && (name.length === 1 || name[1] === 0x2e)) {
    return `the entry name ${JSON.stringify(Buffer.from(name).toString())}`;
  }
  if (name.includes(0x2f)) return 'an entry name containing "/"';
  if (name.includes(0)) return 'an entry name containing a NUL byte';
  return undefined;
}

/** Appends a name to a path within an archive, as bytes; the root is the empty path. */
export function joinArchivePath(parent: Buffer, name: Buffer): Buffer {
  return parent.length === 0 ? name : Buffer.concat([parent, SLASH, name]);
}

const SLASH = Buffer.from('/');
