// Making store paths valid in the local store from binary caches (the coordinator's,
// then its upstreams, each asked in turn until one has the path): the NAR is
// unpacked into a temporary directory inside the store, checked against the narinfo's
// NarHash and NarSize, made read-only and renamed into place, then registered. One fetch
// per path at a time (builds running side by side share it), a few paths at once.
import { join } from 'node:path';
import { encodeBase32 } from '../../../store/base32.js';
import { Hash } from '../../../store/hash.js';
import { unpackNar } from '../../../store/nar-reader.js';
import type { NarInfo } from '../../../store/narinfo.js';
import { CacheError, type CacheClient } from './cache-client.js';
import type { LocalStore, PathInfo } from './local-store.js';
import { deleteTree, makeReadOnly } from './store-tree.js';

/** Downloads at once, across all builds of this agent. */
const DEFAULT_CONCURRENCY = 4;

export class Substituter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  private readonly caches: CacheClient[];

  constructor(
    private readonly store: LocalStore,
    caches: CacheClient | CacheClient[],
    private readonly concurrency = DEFAULT_CONCURRENCY,
  ) {
    this.caches = Array.isArray(caches) ? caches : [caches];
  }

  /** The path's info once it is valid here; undefined when the cache does not have it. */
  ensure(storePath: string, signal: AbortSignal): Promise<PathInfo | undefined> {
    // Under the path's lock: whoever waited for a fetch finds the path valid.
    // The first cache is the coordinator's: a failure to reach it (or an upstream) is
    // waited out for its retry budget, every cache asked again each time.
    return this.store.exclusive(
      storePath,
      async () => (await this.store.query(storePath)) ?? this.limited(() => this.caches[0]!.retrying(storePath, signal, () => this.fetch(storePath, signal))),
    );
  }

  /**
   * From the first cache that has the path and whose NAR checks out; a cache that fails
   * (untrusted narinfo, down, a NAR not as declared) is passed over for the next. Throws
   * the first failure when none had it and one failed, so the build's setup failure says why.
   */
  private async fetch(storePath: string, signal: AbortSignal): Promise<PathInfo | undefined> {
    let failure: unknown;
    for (const cache of this.caches) {
      try {
        const info = await cache.narInfo(storePath, signal);
        if (info) return await this.fetchFrom(cache, info, storePath, signal);
      } catch (err) {
        if (signal.aborted || !(err instanceof CacheError)) throw err;
        failure ??= err;
      }
    }
    if (failure) throw failure;
    return undefined;
  }

  private async fetchFrom(cache: CacheClient, info: NarInfo, storePath: string, signal: AbortSignal): Promise<PathInfo> {
    const temp = await this.store.tempDir();
    try {
      const unpacked = join(temp, 'path');
      const nar = await unpackNar(cache.nar(info, signal), unpacked, { signal });
      checkNar(info, nar.sha256, nar.size);
      await makeReadOnly(unpacked);
      await this.store.moveIntoPlace(unpacked, storePath);
      const storeDir = this.store.storeDir;
      const pathInfo: PathInfo = {
        path: storePath,
        narHash: info.narHash,
        narSize: info.narSize,
        references: info.references.map((r) => `${storeDir}/${r}`).sort(),
        ...(info.deriver ? { deriver: `${storeDir}/${info.deriver}` } : {}),
      };
      await this.store.register(pathInfo);
      return pathInfo;
    } finally {
      await deleteTree(temp);
    }
  }

  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    // A finishing download hands its slot straight to the next waiting one.
    if (this.active >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

function checkNar(info: NarInfo, sha256: Uint8Array, size: number): void {
  let declared: Hash;
  try {
    declared = Hash.parse(info.narHash);
  } catch (err) {
    throw new CacheError(`${info.storePath}: NarHash ${JSON.stringify(info.narHash)}: ${(err as Error).message}`, { cause: err });
  }
  const got = new Hash('sha256', sha256);
  if (size !== info.narSize || !got.equals(declared)) {
    throw new CacheError(
      `${info.storePath}: the NAR downloaded (${size} bytes, sha256:${encodeBase32(sha256)}) is not the one the narinfo declares (${info.narSize} bytes, ${info.narHash})`,
    );
  }
}
