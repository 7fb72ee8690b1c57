// Reading the coordinator's binary cache as a Nix client does: a path's narinfo, whose
// Nix signature must verify with the cache's public key, then its NAR, decompressed as
// it downloads. A cache out of reach is waited out (the agent's retry budget), moving to
// another coordinator's cache when there are several.
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { decompressLz4Frames } from '../../../store/lz4-frames.js';
import { parseNarInfo, type NarInfo } from '../../../store/narinfo.js';
import { countValidSignatures, parseNixPublicKey, type NixPublicKey } from '../../../store/nix-signature.js';
import { parseStorePath } from '../../../store/store-path.js';
import { DEFAULT_RETRY_FOR_MS, HttpStatusError, retryTransient } from '../../backoff.js';
import type { CacheInfo } from '../builder.js';

export class CacheError extends Error {
  override name = 'CacheError';
}

export class CacheClient {
  /** The key narinfos must be signed by, or why there is none to trust. */
  private readonly key: NixPublicKey | string;
  /** Which of the caches to try next: moved on past one that failed transiently. */
  private turn = 0;

  constructor(private readonly cache: CacheInfo) {
    try {
      this.key = parseNixPublicKey(cache.publicKey);
    } catch (err) {
      this.key = `the coordinator's cache public key ${JSON.stringify(cache.publicKey)} is unusable: ${(err as Error).message}`;
    }
  }

  /**
   * The narinfo of `storePath`, checked to be about that path and signed by the cache's
   * key; undefined when the cache does not have it.
   */
  async narInfo(storePath: string, signal: AbortSignal): Promise<NarInfo | undefined> {
    const { url, res } = await this.get(`${parseStorePath(storePath).hashPart}.narinfo`, signal);
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    const info = parseNarInfo(await res.text());
    if (info.storePath !== storePath) {
      throw new CacheError(`${url} describes ${info.storePath}, not ${storePath}`);
    }
    if (typeof this.key === 'string') throw new CacheError(`cannot trust ${url}: ${this.key}`);
    if (countValidSignatures(info, [this.key]) === 0) {
      throw new CacheError(`${url} has no valid signature by the cache's key ${this.key.name}`);
    }
    return info;
  }

  /** The NAR of a narinfo, uncompressed. */
  async *nar(info: NarInfo, signal: AbortSignal): AsyncGenerator<Buffer> {
    const file = info.files.find((f) => f.compression === 'lz4' || f.compression === 'none');
    if (!file) {
      const offered = info.files.map((f) => f.compression ?? 'bzip2').join(', ');
      throw new CacheError(`${info.storePath}: the cache offers its NAR as ${offered}; the local builder reads lz4 or none`);
    }
    const { res } = await this.get(file.url, signal);
    if (res.status !== 200 || !res.body) throw new CacheError(`${file.url}: HTTP ${res.status} for an advertised NAR`);
    const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
    if (file.compression === 'none') yield* body as AsyncIterable<Buffer>;
    else yield* decompressLz4Frames(body as AsyncIterable<Buffer>);
  }

  /**
   * Runs `fetch` (one path's whole download) until it succeeds, waiting out transient
   * failures for the retry budget; each try after one goes to the next cache.
   */
  retrying<T>(what: string, signal: AbortSignal, fetch: () => Promise<T>): Promise<T> {
    const retry = this.cache.retry;
    return retryTransient(
      {
        what: `fetch of ${what} from the coordinator's cache`,
        signal,
        budgetMs: retry?.forMs ?? DEFAULT_RETRY_FOR_MS,
        log: retry?.log ?? { warn: () => undefined },
        onTransient: () => (this.turn += 1),
      },
      fetch,
    );
  }

  /** `name` (relative to a cache's root) from the cache whose turn it is. */
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
