// Where the blob store is, as `--nar-store` names it: a directory (a path or file:///path)
// or `s3://BUCKET/PREFIX?endpoint=URL&region=R&path_style=true|false`. Every mistake is
// named with the part of the address it is in.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BlobStore } from './blob-store.js';

export interface S3Location {
  bucket: string;
  /** Key prefix inside the bucket: empty, or ending in '/'. */
  prefix: string;
  /** The server (any S3-compatible one); undefined: AWS's own for the region. */
  endpoint?: string;
  region: string;
  /** Buckets as a path (http://host/bucket/key) rather than a host name: the default with an endpoint. */
  pathStyle: boolean;
}

export type BlobStoreLocation = { kind: 'fs'; dir: string } | ({ kind: 's3' } & S3Location);

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const S3_PARAMS = new Set(['endpoint', 'region', 'path_style']);

export function parseBlobStoreLocation(value: string, env: NodeJS.ProcessEnv = process.env): BlobStoreLocation {
  if (value.startsWith('file:')) return { kind: 'fs', dir: fileURLToPath(value) };
  if (!value.startsWith('s3:')) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) throw new Error(`--nar-store ${value}: unknown scheme (a directory, file:///DIR or s3://BUCKET/PREFIX)`);
    if (value === '') throw new Error('--nar-store is empty: give a directory or s3://BUCKET/PREFIX');
    return { kind: 'fs', dir: resolve(value) };
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`--nar-store ${value}: not a URL (s3://BUCKET/PREFIX?endpoint=URL&region=R)`);
  }
  if (!BUCKET.test(url.hostname)) throw new Error(`--nar-store ${value}: bucket ${JSON.stringify(url.hostname)} is not a bucket name (3-63 of a-z 0-9 . -)`);
  for (const name of url.searchParams.keys()) {
    if (!S3_PARAMS.has(name)) throw new Error(`--nar-store ${value}: unknown parameter ${name} (endpoint, region, path_style)`);
  }
  const endpoint = url.searchParams.get('endpoint') ?? undefined;
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/.test(endpoint)) throw new Error(`--nar-store ${value}: endpoint ${endpoint} is not an http(s) URL`);
  const region = url.searchParams.get('region') ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const pathStyleParam = url.searchParams.get('path_style');
  if (pathStyleParam !== null && pathStyleParam !== 'true' && pathStyleParam !== 'false') {
    throw new Error(`--nar-store ${value}: path_style is true or false, not ${pathStyleParam}`);
  }
  const prefix = decodeURIComponent(url.pathname).replace(/^\/+/, '').replace(/\/*$/, '');
  // Read from the address as given: URL has already resolved dot segments away.
  const given = value.replace(/^s3:\/\/[^/?]*/, '').replace(/\?.*$/, '');
  if (given.split('/').some((s) => s === '.' || s === '..')) throw new Error(`--nar-store ${value}: the prefix may not hold . or .. segments`);
  return {
    kind: 's3',
    bucket: url.hostname,
    prefix: prefix ? `${prefix}/` : '',
    endpoint,
    region,
    pathStyle: pathStyleParam === null ? endpoint !== undefined : pathStyleParam === 'true',
  };
}

/** S3 credentials from the configuration file; without them the SDK reads AWS_* (and ~/.aws). */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Opens the store a location names (the S3 client is loaded only for an s3:// one). */
export async function openBlobStore(location: BlobStoreLocation, opts: { credentials?: S3Credentials } = {}): Promise<BlobStore> {
  if (location.kind === 'fs') {
    const { FsBlobStore } = await import('./fs-blob-store.js');
    return FsBlobStore.open(location.dir);
  }
  const { S3BlobStore } = await import('./s3-blob-store.js');
  return new S3BlobStore({ ...location, credentials: opts.credentials });
}
