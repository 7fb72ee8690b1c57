// The blob store in S3-compatible object storage (AWS S3, Ceph's radosgw, MinIO): a blob
// is the object <prefix><key> in one bucket. A staged upload is an S3 multipart upload:
// the parts the server lists are exactly the whole parts a dead writer left, so a resumed
// writer lists them and goes on with the next part number. Objects appear only whole (S3
// publishes a PUT or a completed multipart upload atomically).
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import {
  BlobStoreError,
  checkKey,
  checkPartSize,
  checkPrefix,
  checkRange,
  MIN_PART_SIZE,
  PartedUpload,
  WriterGuard,
  type BlobInfo,
  type BlobStore,
  type ByteRange,
  type StagedBlob,
  type StagedInfo,
} from './blob-store.js';
import type { S3Location } from './blob-store-url.js';

/** Server and network faults the SDK itself tries again before we see them. */
const MAX_ATTEMPTS = 3;

export interface S3BlobStoreOptions extends S3Location {
  /** Explicit credentials (the config file's); without them the SDK's chain reads AWS_* and ~/.aws. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** How long one request may take before it counts as the server gone (default 30 s). */
  requestTimeoutMs?: number;
  maxAttempts?: number;
}

export class S3BlobStore implements BlobStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly writers = new WriterGuard();

  constructor(opts: S3BlobStoreOptions) {
    this.bucket = opts.bucket;
    this.prefix = opts.prefix;
    this.client = new S3Client({
      region: opts.region,
      endpoint: opts.endpoint,
      // Buckets as a path, not a host name: what radosgw and MinIO serve by default.
      forcePathStyle: opts.pathStyle,
      credentials: opts.credentials,
      maxAttempts: opts.maxAttempts ?? MAX_ATTEMPTS,
      // Checksums only where S3 requires them: stores other than AWS reject the trailers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: 5_000, requestTimeout: opts.requestTimeoutMs ?? 30_000 },
    });
  }

  get location(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  private objectKey(key: string): string {
    return this.prefix + checkKey(key);
  }

  /** Sends a command; failures become storage's kinds, naming what was asked. */
  private async send<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw s3Failure(err, `${what} in ${this.location}`);
    }
  }

  async put(key: string, body: AsyncIterable<Uint8Array> | Uint8Array): Promise<void> {
    const Key = this.objectKey(key);
    if (body instanceof Uint8Array && body.length < MIN_PART_SIZE) {
      await this.send(`storing ${key}`, () => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.length })));
      return;
    }
    // A stream: its first part decides. One that ends within it is one PUT; a longer one a
    // multipart upload of its own (no other upload of the key is touched), aborted on failure.
    const first: Uint8Array[] = [];
    let firstSize = 0;
    let staged: StagedBlob | undefined;
    try {
      for await (const chunk of body instanceof Uint8Array ? [body] : body) {
        if (staged) {
          await staged.write(chunk);
          continue;
        }
        first.push(chunk);
        firstSize += chunk.length;
        if (firstSize >= MIN_PART_SIZE) {
          staged = await this.createStaged(key, MIN_PART_SIZE);
          for (const c of first.splice(0)) await staged.write(c);
        }
      }
      if (staged) {
        await staged.complete();
      } else {
        const bytes = Buffer.concat(first);
        await this.send(`storing ${key}`, () => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: bytes, ContentLength: bytes.length })));
      }
    } catch (err) {
      await staged?.abort().catch(() => undefined);
      throw err;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    checkRange(key, range, Number.MAX_SAFE_INTEGER);
    const res = await this.send(`reading ${key}`, () =>
      this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Range: range ? `bytes=${range.start}-${range.end}` : undefined })),
    );
    if (!(res.Body instanceof Readable)) throw new Error(`reading ${key} in ${this.location}: the response has no body stream`);
    return res.Body;
  }

  async stat(key: string): Promise<BlobInfo | undefined> {
    try {
      const res = await this.send(`looking up ${key}`, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) })));
      return { key, size: res.ContentLength ?? 0, modifiedMs: res.LastModified?.getTime() ?? 0 };
    } catch (err) {
      if (err instanceof BlobStoreError && err.kind === 'not_found') return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.send(`deleting ${key}`, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) })));
  }

  async *list(prefix: string): AsyncGenerator<BlobInfo> {
    const Prefix = this.prefix + checkPrefix(prefix);
    let ContinuationToken: string | undefined;
    do {
      const page = await this.send(`listing ${prefix}*`, () => this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken })));
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  readUrl(key: string, expiresInSeconds: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), { expiresIn: expiresInSeconds });
  }

  /** The multipart uploads open for exactly `key`, oldest first. */
  private async uploadsOf(key: string): Promise<StagedInfo[]> {
    const found: StagedInfo[] = [];
    for await (const s of this.listStaged(key)) if (s.key === key) found.push(s);
    return found.sort((a, b) => a.startedMs - b.startedMs);
  }

  async startStaged(key: string, opts: { partSize?: number } = {}): Promise<StagedBlob> {
    const partSize = checkPartSize(opts.partSize);
    this.writers.hold(key);
    try {
      for (const old of await this.uploadsOf(key)) await this.abortUpload(key, old.uploadId);
      return await this.createStaged(key, partSize, true);
    } catch (err) {
      this.writers.release(key);
      throw err;
    }
  }

  /** A new multipart upload; `held` when the caller holds the key (released at its end). */
  private async createStaged(key: string, partSize: number, held = false): Promise<StagedBlob> {
    const res = await this.send(`starting an upload of ${key}`, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(key) })),
    );
    if (!res.UploadId) throw new BlobStoreError('unavailable', `starting an upload of ${key} in ${this.location}: the server returned no upload id`);
    return new S3StagedBlob(this.client, this.bucket, this.objectKey(key), key, res.UploadId, [], partSize, (what, run) => this.send(what, run), () => {
      if (held) this.writers.release(key);
    });
  }

  async resumeStaged(key: string, opts: { partSize?: number } = {}): Promise<StagedBlob | undefined> {
    const partSize = checkPartSize(opts.partSize);
    this.writers.hold(key);
    try {
      const uploads = await this.uploadsOf(key);
      const latest = uploads.pop();
      for (const old of uploads) await this.abortUpload(key, old.uploadId);
      if (!latest) {
        this.writers.release(key);
        return undefined;
      }
      const parts = await this.listParts(key, latest.uploadId);
      return new S3StagedBlob(this.client, this.bucket, this.objectKey(key), key, latest.uploadId, parts, partSize, (what, run) => this.send(what, run), () =>
        this.writers.release(key),
      );
    } catch (err) {
      this.writers.release(key);
      throw err;
    }
  }

  /**
   * The parts a resumed writer keeps: numbers 1..n with no gap, each a full part (S3 takes
   * a short part only last; one that was meant to be last, of an upload never completed,
   * is sent again with what follows it).
   */
  private async listParts(key: string, uploadId: string): Promise<ListedPart[]> {
    const listed: ListedPart[] = [];
    let PartNumberMarker: string | undefined;
    do {
      const page = await this.send(`listing the parts of the upload of ${key}`, () =>
        this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: this.objectKey(key), UploadId: uploadId, PartNumberMarker })),
      );
      for (const p of page.Parts ?? []) {
        if (p.PartNumber !== undefined && p.ETag !== undefined) listed.push({ number: p.PartNumber, etag: p.ETag, size: p.Size ?? 0 });
      }
      PartNumberMarker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
    } while (PartNumberMarker);
    listed.sort((a, b) => a.number - b.number);
    const kept: ListedPart[] = [];
    for (const p of listed) {
      if (p.number !== kept.length + 1 || p.size < MIN_PART_SIZE) break;
      kept.push(p);
    }
    return kept;
  }

  private async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.send(`aborting the upload of ${key}`, () =>
        this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(key), UploadId: uploadId })),
      );
    } catch (err) {
      if (!(err instanceof BlobStoreError && err.kind === 'not_found')) throw err;
    }
  }

  async *listStaged(prefix: string): AsyncGenerator<StagedInfo> {
    const Prefix = this.prefix + checkPrefix(prefix);
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.send(`listing the uploads under ${prefix}*`, () =>
        this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix, KeyMarker, UploadIdMarker })),
      );
      for (const u of page.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue;
        yield { key: u.Key.slice(this.prefix.length), uploadId: u.UploadId, startedMs: u.Initiated?.getTime() ?? 0 };
      }
      if (!page.IsTruncated) return;
      KeyMarker = page.NextKeyMarker;
      UploadIdMarker = page.NextUploadIdMarker;
    }
  }

  close(): void {
    this.client.destroy();
  }
}

interface ListedPart {
  number: number;
  etag: string;
  size: number;
}

type Send = <T>(what: string, run: () => Promise<T>) => Promise<T>;

class S3StagedBlob extends PartedUpload {
  private readonly listed: ListedPart[];

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly objectKey: string,
    key: string,
    uploadId: string,
    parts: ListedPart[],
    partSize: number,
    private readonly send: Send,
    letGo: () => void,
  ) {
    super(key, uploadId, partSize, letGo);
    this.listed = [...parts];
  }

  get size(): number {
    return this.listed.reduce((n, p) => n + p.size, 0);
  }

  get parts(): readonly number[] {
    return this.listed.map((p) => p.size);
  }

  protected async storePart(part: Buffer): Promise<void> {
    const number = this.listed.length + 1;
    const res = await this.send(`uploading part ${number} of ${this.key}`, () =>
      this.client.send(
        new UploadPartCommand({ Bucket: this.bucket, Key: this.objectKey, UploadId: this.uploadId, PartNumber: number, Body: part, ContentLength: part.length }),
      ),
    );
    if (!res.ETag) throw new BlobStoreError('unavailable', `uploading part ${number} of ${this.key}: the server returned no ETag`);
    this.listed.push({ number, etag: res.ETag, size: part.length });
  }

  protected async publish(): Promise<void> {
    const Parts: CompletedPart[] = this.listed.map((p) => ({ PartNumber: p.number, ETag: p.etag }));
    await this.send(`completing the upload of ${this.key}`, () =>
      this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey, UploadId: this.uploadId, MultipartUpload: { Parts } })),
    );
  }

  protected async drop(): Promise<void> {
    await this.send(`aborting the upload of ${this.key}`, () =>
      this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey, UploadId: this.uploadId })),
    );
  }
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** S3's error names (and HTTP statuses) as storage's kinds. */
export function s3Failure(err: unknown, what: string): unknown {
  if (err instanceof BlobStoreError) return err;
  const e = err as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? '';
  const detail = `${what}: ${name}${e.message && e.message !== name ? ` (${e.message})` : ''}`;
  const kind = ((): BlobStoreError['kind'] | undefined => {
    if (name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload') return 'not_found';
    if (name === 'InvalidRange' || status === 416) return 'out_of_range';
    if (name === 'QuotaExceeded' || status === 507) return 'out_of_space';
    if (name === 'NoSuchBucket' || ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch'].includes(name) || status === 403) return 'misconfigured';
    if (status === 404) return 'not_found';
    if (status !== undefined) return status >= 500 || status === 429 ? 'unavailable' : undefined;
    // No HTTP answer at all (refused, reset, timed out): the store is away. Anything else
    // without a status is no request failure (a bug of ours) and passes as it is.
    const network = e.$metadata !== undefined || NETWORK_CODES.has(e.code ?? '') || name === 'TimeoutError';
    return network ? 'unavailable' : undefined;
  })();
  return kind ? new BlobStoreError(kind, detail, { cause: err }) : err;
}
