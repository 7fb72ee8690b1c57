// Reading a binary cache (the coordinator's, or an upstream) as a Nix client does: a
// path's narinfo, whose signature (Nix or Guix style) must verify with a key trusted for
// that cache, then its NAR, decompressed as it downloads. The coordinator's cache out of
// reach is waited out (the agent's retry budget), moving to another coordinator's cache
// when there are several.
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { NarInfo } from '../../../store/narinfo.js';
import { judgeNarInfo, parseTrustedKeys, type TrustedKeys } from '../../../store/narinfo-trust.js';
import { parseStorePath } from '../../../store/store-path.js';
import { canDecompress, decompressNar } from '../../../store/nar-decompress.js';
import { DEFAULT_RETRY_FOR_MS, HttpStatusError, retryTransient } from '../../backoff.js';
import type { CacheInfo, Substituter } from '../builder.js';

export class CacheError extends Error {
  override name = 'CacheError';
}

/** A cache to read: its URL (read at each fetch), keys, and for the coordinator's, its mirrors and retry budget. */
export type CacheSource = Substituter & Pick<CacheInfo, 'mirrors' | 'retry'>;

export class CacheClient {
  /** The keys narinfos must be signed by, or why there are none to trust. */
  private readonly keys: TrustedKeys | string;
  /** Which of the caches to try next: moved on past one that failed transiently. */
  private turn = 0;

  constructor(private readonly cache: CacheSource) {
    try {
      this.keys = parseTrustedKeys(cache.publicKeys);
    } catch (err) {
      this.keys = `the keys of ${cache.url} are unusable: ${(err as Error).message}`;
    }
  }

  get url(): string {
    return this.cache.url;
  }

  /**
   * The narinfo of `storePath`, checked to be about that path and signed by a key trusted
   * for the cache; undefined when the cache does not have it.
   */
  async narInfo(storePath: string, signal: AbortSignal): Promise<NarInfo | undefined> {
    const { url, res } = await this.get(`${parseStorePath(storePath).hashPart}.narinfo`, signal);
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
    const { res } = await this.get(file.url, signal);
    if (res.status !== 200 || !res.body) throw new CacheError(`${file.url}: HTTP ${res.status} for an advertised NAR`);
    yield* decompressNar(file.compression, Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), signal);
  }

  /**
   * Runs `fetch` (one path's whole download) until it succeeds, waiting out transient
   * failures for the retry budget; each try after one goes to the next of this cache's mirrors.
   */
  retrying<T>(what: string, signal: AbortSignal, fetch: () => Promise<T>): Promise<T> {
    const retry = this.cache.retry;
    return retryTransient(
      {
        what: `fetch of ${what}`,
        signal,
        budgetMs: retry?.forMs ?? DEFAULT_RETRY_FOR_MS,
        log: retry?.log ?? { warn: () => undefined },
        onTransient: () => (this.turn += 1),
      },
      fetch,
    );
  }

  /** `name` (relative to a cache's root) from the cache (or mirror) whose turn it is. */
  private async get(name: string, signal: AbortSignal): Promise<{ url: URL; res: Response }> {
    const caches = [this.cache.url, ...(this.cache.mirrors?.() ?? [])];
    const root = caches[this.turn % caches.length]!;
    // A trailing slash, so that relative names resolve inside the cache's URL.
    const url = new URL(name, root.endsWith('/') ? root : `${root}/`);
    let res: Response;
    try {
      res = await fetch(url, { signal });
    } catch (err) {
      if (signal.aborted) throw err;
      throw new CacheError(`cannot reach the cache at ${url}: ${(err as Error).message}`, { cause: err });
    }
    if (res.status !== 200 && res.status !== 404) {
      await res.body?.cancel();
      const message = `${url}: HTTP ${res.status} ${res.statusText}`;
      // The status goes with it: a 5xx is waited out, anything else is final.
      throw new CacheError(message, { cause: new HttpStatusError(message, res.status) });
    }
    return { url, res };
  }
}
