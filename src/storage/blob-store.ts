// The blob store: where kiln keeps large immutable files (NARs) by key, on a filesystem
// (fs-blob-store.ts) or in S3-compatible object storage (s3-blob-store.ts). A blob is
// visible under its key only once whole: put writes aside and publishes at the end, and a
// staged upload (written part by part, resumable after its writer died) becomes the blob
// only when completed. Failures are storage's own kinds (BlobStoreError); the edge maps them.
import type { Readable } from 'node:stream';

/** Storage's own failure kinds: what a caller decides on, whatever the backend. */
export type BlobErrorKind =
  /** No blob (or staged upload) under that key. */
  | 'not_found'
  /** The store cannot be reached or answered with a server fault: try again later. */
  | 'unavailable'
  /** No room (disk full, quota): nothing of the write is kept. */
  | 'out_of_space'
  /** The store refused the request as configured (no such bucket, bad credentials). */
  | 'misconfigured'
  /** A range that starts past the blob's end. */
  | 'out_of_range'
  /** Another writer holds the staged upload. */
  | 'in_use';

export class BlobStoreError extends Error {
  override name = 'BlobStoreError';
  constructor(
    readonly kind: BlobErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const isBlobError = (err: unknown, kind?: BlobErrorKind): err is BlobStoreError =>
  err instanceof BlobStoreError && (kind === undefined || err.kind === kind);

/** Bytes `start` to `end` of a blob, both included (as HTTP ranges are). */
export interface ByteRange {
  start: number;
  end: number;
}

export interface BlobInfo {
  key: string;
  size: number;
  modifiedMs: number;
}

/** A staged upload found under a key prefix (for sweeping the abandoned ones). */
export interface StagedInfo {
  key: string;
  /** The backend's name for this upload (S3's UploadId). */
  uploadId: string;
  startedMs: number;
}

/**
 * A blob being written in parts. Only whole parts count: `size` is what a writer that
 * died would find again, and where its successor resumes. Parts other than the last are
 * at least the store's minimum part size (S3: 5 MiB): `write` buffers up to `partSize`.
 */
export interface StagedBlob {
  readonly key: string;
  readonly uploadId: string;
  /** Bytes held in complete parts (durable; where a resumed writer goes on from). */
  readonly size: number;
  /** Sizes of the complete parts, in order. */
  readonly parts: readonly number[];
  /** Buffers bytes and uploads each full part; resolves once the buffer has room again. */
  write(bytes: Uint8Array): Promise<void>;
  /** Uploads what is buffered as the last part and makes the blob visible under its key. */
  complete(): Promise<void>;
  /** Drops the upload and every part of it. */
  abort(): Promise<void>;
  /**
   * Lets the upload go unfinished (its writer's stream broke): the whole parts stay for a
   * resume, what was buffered is dropped.
   */
  release(): Promise<void>;
}

export interface BlobStore {
  /** Where the blobs live, in words for logs and errors (a directory, or s3://bucket/prefix). */
  readonly location: string;
  /** Stores a blob from a stream (or bytes); it appears under `key` only when whole. */
  put(key: string, body: AsyncIterable<Uint8Array> | Uint8Array): Promise<void>;
  /** Streams a blob or a range of it; not_found (before any byte) when there is none. */
  read(key: string, range?: ByteRange): Promise<Readable>;
  stat(key: string): Promise<BlobInfo | undefined>;
  /** Removes a blob; removing one that is not there is not an error. */
  delete(key: string): Promise<void>;
  /** Every blob whose key starts with `prefix`, in key order. */
  list(prefix: string): AsyncIterable<BlobInfo>;
  /**
   * A URL that serves the blob for `expiresInSeconds` without kiln in the path (S3's
   * presigned GET), or undefined where the store has none (the filesystem).
   */
  readUrl(key: string, expiresInSeconds: number): Promise<string | undefined>;
  /** Starts a staged upload for `key`, dropping any earlier one for that key. */
  startStaged(key: string, opts?: { partSize?: number }): Promise<StagedBlob>;
  /** Opens the staged upload left for `key`, with the parts it holds; undefined when there is none. */
  resumeStaged(key: string, opts?: { partSize?: number }): Promise<StagedBlob | undefined>;
  /** Staged uploads under a key prefix not yet completed or aborted. */
  listStaged(prefix: string): AsyncIterable<StagedInfo>;
  /** Lets go of what the store holds open (connections); nothing may be asked after. */
  close(): void;
}

/** S3's least part size (every part but the last); the filesystem keeps the same rule. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;

/** Keys are relative paths of plain segments, so no key escapes a directory or a prefix. */
const KEY = /^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

export function checkKey(key: string): string {
  if (key.length > 512 || !KEY.test(key)) throw new Error(`bad blob key ${JSON.stringify(key)}: plain path segments of [A-Za-z0-9._-], none starting with '.'`);
  return key;
}

/** A key prefix: empty, or a key's beginning (may end in '/'). */
export function checkPrefix(prefix: string): string {
  if (prefix !== '' && !KEY.test(prefix.replace(/\/$/, ''))) throw new Error(`bad blob key prefix ${JSON.stringify(prefix)}`);
  return prefix;
}

export function checkPartSize(partSize: number | undefined): number {
  const size = partSize ?? DEFAULT_PART_SIZE;
  if (!Number.isInteger(size) || size < MIN_PART_SIZE) throw new Error(`part size ${size} is below the least one object stores take (${MIN_PART_SIZE} bytes)`);
  return size;
}

export function checkRange(key: string, range: ByteRange | undefined, size: number): void {
  if (!range) return;
  if (!Number.isInteger(range.start) || !Number.isInteger(range.end) || range.start < 0 || range.end < range.start) {
    throw new Error(`bad range ${range.start}-${range.end} of ${key}`);
  }
  if (range.start >= size) throw new BlobStoreError('out_of_range', `range ${range.start}-${range.end} starts past the end of ${key} (${size} bytes)`);
}

/** The one writer per staged upload in this process: a second is refused as in_use. */
export class WriterGuard {
  private readonly held = new Set<string>();

  hold(key: string): void {
    checkKey(key);
    if (this.held.has(key)) throw new BlobStoreError('in_use', `the staged upload of ${key} is being written by another writer`);
    this.held.add(key);
  }

  release(key: string): void {
    this.held.delete(key);
  }
}

/**
 * What both staged uploads share: bytes buffered into parts, each sent by `sendPart`;
 * one ending (complete, abort or release) after which nothing more is taken, and the
 * writer's hold on the key let go whatever the ending did.
 */
export abstract class PartedUpload implements StagedBlob {
  private readonly buffer: PartBuffer;
  private ended = false;

  constructor(
    readonly key: string,
    readonly uploadId: string,
    partSize: number,
    private readonly letGo: () => void,
  ) {
    this.buffer = new PartBuffer(partSize, (part) => this.sendPart(part));
  }

  abstract readonly size: number;
  abstract readonly parts: readonly number[];
  /** Stores the next whole part. */
  protected abstract storePart(part: Buffer): Promise<void>;
  /** Makes the blob of the stored parts visible under its key. */
  protected abstract publish(): Promise<void>;
  /** Removes every stored part. */
  protected abstract drop(): Promise<void>;
  /** Lets go of what the upload holds open (files), before any ending's work. */
  protected async closeHandles(): Promise<void> {}

  private async sendPart(part: Buffer): Promise<void> {
    this.live();
    await this.storePart(part);
  }

  private live(): void {
    if (this.ended) throw new Error(`the staged upload of ${this.key} has ended`);
  }

  write(bytes: Uint8Array): Promise<void> {
    this.live();
    return this.buffer.write(bytes);
  }

  async complete(): Promise<void> {
    const last = this.buffer.take();
    if (last.length > 0 || this.parts.length === 0) await this.sendPart(last);
    await this.end(() => this.publish());
  }

  abort(): Promise<void> {
    return this.end(() => this.drop());
  }

  release(): Promise<void> {
    this.buffer.take();
    return this.end(async () => undefined);
  }

  /** Ends the upload once: closes what it holds, does `then` while still holding the key, then lets it go. */
  protected async end(then: () => Promise<void>): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    try {
      await this.closeHandles();
      await then();
    } finally {
      this.letGo();
    }
  }
}

/**
 * The buffering both staged uploads share: bytes gather until a part is full, then
 * `upload` sends it; complete sends the rest as the last part.
 */
class PartBuffer {
  private chunks: Uint8Array[] = [];
  private buffered = 0;

  constructor(
    private readonly partSize: number,
    private readonly upload: (part: Buffer) => Promise<void>,
  ) {}

  async write(bytes: Uint8Array): Promise<void> {
    let rest = bytes;
    while (this.buffered + rest.length >= this.partSize) {
      const take = this.partSize - this.buffered;
      this.chunks.push(rest.subarray(0, take));
      rest = rest.subarray(take);
      const part = Buffer.concat(this.chunks);
      this.chunks = [];
      this.buffered = 0;
      await this.upload(part);
    }
    if (rest.length > 0) {
      this.chunks.push(rest);
      this.buffered += rest.length;
    }
  }

  /** What is buffered, emptied (the last part). */
  take(): Buffer {
    const rest = Buffer.concat(this.chunks);
    this.chunks = [];
    this.buffered = 0;
    return rest;
  }
}
