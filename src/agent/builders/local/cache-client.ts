// Reading a binary cache (the coordinator's, or an upstream) as a Nix client does: a
// path's narinfo, whose signature (Nix or Guix style) must verify with a key trusted for
// that cache, then its NAR, decompressed as it downloads.
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { NarInfo } from '../../../store/narinfo.js';
import { judgeNarInfo, parseTrustedKeys, type TrustedKeys } from '../../../store/narinfo-trust.js';
import { parseStorePath } from '../../../store/store-path.js';
import type { Substituter } from '../builder.js';
import { canDecompress, decompressNar } from '../../../store/nar-decompress.js';

export class CacheError extends Error {
  override name = 'CacheError';
}

export class CacheClient {
  private readonly base: URL;
  /** The keys narinfos must be signed by, or why there are none to trust. */
  private readonly keys: TrustedKeys | string;
  readonly url: string;

  constructor(cache: Substituter) {
    this.url = cache.url;
    // A trailing slash, so that relative names resolve inside the cache's URL.
    this.base = new URL(cache.url.endsWith('/') ? cache.url : `${cache.url}/`);
    try {
      this.keys = parseTrustedKeys(cache.publicKeys);
    } catch (err) {
      this.keys = `the keys of ${cache.url} are unusable: ${(err as Error).message}`;
    }
  }

  /**
   * The narinfo of `storePath`, checked to be about that path and signed by the cache's
   * key; undefined when the cache does not have it.
   */
  async narInfo(storePath: string, signal: AbortSignal): Promise<NarInfo | undefined> {
    const url = new URL(`${parseStorePath(storePath).hashPart}.narinfo`, this.base);
    const res = await this.get(url, signal);
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (typeof this.keys === 'string') throw new CacheError(`cannot trust ${url}: ${this.keys}`);
    const judged = judgeNarInfo(await res.text(), storePath, this.keys);
    if (!judged.trusted) throw new CacheError(`${url}: ${judged.reason}`);
    return judged.info;
  }

  /** The NAR of a narinfo, uncompressed. */
  async *nar(info: NarInfo, signal: AbortSignal): AsyncGenerator<Buffer> {
    const file = info.files.find((f) => canDecompress(f.compression));
    if (!file) {
      const offered = info.files.map((f) => f.compression ?? 'bzip2').join(', ');
      throw new CacheError(`${info.storePath}: the cache offers its NAR as ${offered}; the local builder reads lz4, none, xz, zstd, bzip2 or gzip`);
    }
    const res = await this.get(new URL(file.url, this.base), signal);
    if (res.status !== 200 || !res.body) throw new CacheError(`${file.url}: HTTP ${res.status} for an advertised NAR`);
    yield* decompressNar(file.compression, Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), signal);
  }

  private async get(url: URL, signal: AbortSignal): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(url, { signal });
    } catch (err) {
      if (signal.aborted) throw err;
      throw new CacheError(`cannot reach the cache at ${url}: ${(err as Error).message}`, { cause: err });
    }
    if (res.status !== 200 && res.status !== 404) {
      await res.body?.cancel();
      throw new CacheError(`${url}: HTTP ${res.status} ${res.statusText}`);
    }
    return res;
  }
}
