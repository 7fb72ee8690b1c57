import { describe, expect, test } from '@jest/globals';
import { resolve } from 'node:path';
import { parseBlobStoreLocation } from '../../../src/storage/blob-store-url.js';

describe('--nar-store addresses', () => {
  test('a path or file:// URL is a directory', () => {
    expect(parseBlobStoreLocation('nars')).toEqual({ kind: 'fs', dir: resolve('nars') });
    expect(parseBlobStoreLocation('file:///var/lib/kiln/nars')).toEqual({ kind: 'fs', dir: '/var/lib/kiln/nars' });
  });

  test('s3:// names the bucket, the prefix, the endpoint and the region; path style by default with an endpoint', () => {
    expect(parseBlobStoreLocation('s3://kiln-cache/farm/nars/?endpoint=http://127.0.0.1:7480&region=eu-west-1', {})).toEqual({
      kind: 's3',
      bucket: 'kiln-cache',
      prefix: 'farm/nars/',
      endpoint: 'http://127.0.0.1:7480',
      region: 'eu-west-1',
      pathStyle: true,
    });
    expect(parseBlobStoreLocation('s3://kiln-cache', { AWS_REGION: 'ap-south-1' })).toEqual({
      kind: 's3',
      bucket: 'kiln-cache',
      prefix: '',
      endpoint: undefined,
      region: 'ap-south-1',
      pathStyle: false,
    });
    expect(parseBlobStoreLocation('s3://kiln-cache/x?endpoint=https://s3.example&path_style=false', {})).toMatchObject({ pathStyle: false, region: 'us-east-1' });
  });

  test('names each mistake', () => {
    expect(() => parseBlobStoreLocation('s3://Bad_Bucket/x')).toThrow(/bucket "bad_bucket"|is not a bucket name/);
    expect(() => parseBlobStoreLocation('s3://kiln/x?endpont=http://h')).toThrow(/unknown parameter endpont/);
    expect(() => parseBlobStoreLocation('s3://kiln/x?endpoint=ftp://h')).toThrow(/endpoint ftp:\/\/h is not an http\(s\) URL/);
    expect(() => parseBlobStoreLocation('s3://kiln/x?path_style=yes')).toThrow(/path_style is true or false/);
    expect(() => parseBlobStoreLocation('s3://kiln/a/../b')).toThrow();
    expect(() => parseBlobStoreLocation('gs://kiln/x')).toThrow(/unknown scheme/);
    expect(() => parseBlobStoreLocation('')).toThrow(/empty/);
  });
});
