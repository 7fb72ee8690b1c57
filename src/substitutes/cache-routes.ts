// The binary cache over HTTP, in the layout Nix and Guix clients expect:
// /nix-cache-info, /<hash>.narinfo, /nar/<file>, /log/<drv>, /signing-key.pub, /nix-public-key.
// NARs are streamed from disk (ranges and HEAD included), never read whole.
import { existsSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { and, desc, eq, isNotNull } from 'drizzle-orm';
import type { HttpRequest, HttpResponse, HttpRoute } from '../coordinator/http-routes.js';
import type { Database } from '../db/connection.js';
import { buildAttempts, builds, narFiles, storePaths } from '../db/schema.js';
import type { LogStorage } from '../storage/log-storage.js';
import type { NarStorage } from '../storage/nar-storage.js';
import type { CacheKeys } from './cache-keys.js';
import { contentAddressOf } from './content-addresses.js';
import type { NarInfoMemory, RememberedNarInfo } from './narinfo-memory.js';
import type { OpenNars } from './open-nars.js';
import { currentSignatures, narInfoText } from './narinfo-text.js';
import type { StorePathFeed } from './store-path-feed.js';

export interface CacheRouteDeps {
  db: Database;
  storage: NarStorage;
  logs: LogStorage;
  keys: CacheKeys;
  storeDir: string;
  /** Where this cache ranks among a client's substituters (lower is tried first). */
  priority?: number;
  /** The in-memory index: misses answered from it, hits from its texts. Without it, the database. */
  feed?: StorePathFeed;
  memory?: NarInfoMemory;
  /** NAR files kept open between downloads. */
  openNars: OpenNars;
  ttl?: Partial<CacheTtls>;
}

/** Cache-Control max-age of narinfos, in seconds (as guix publish's --ttl and nar-herder's new-ttl, negative-ttl). */
export interface CacheTtls {
  found: number;
  /** A path that entered the cache within the last hour: it may still get compressions. */
  fresh: number;
  missing: number;
}

export const DEFAULT_CACHE_TTLS: CacheTtls = { found: 3600, fresh: 300, missing: 60 };
const FRESH_MS = 60 * 60_000;

const NARINFO = /^\/([0-9abcdfghijklmnpqrsvwxyz]{32})\.narinfo$/;
const NAR = /^\/nar\/([0-9a-z]{52}\.nar(?:\.[a-z0-9]{1,8})?)$/;
const LOG = /^\/log\/([0-9abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+\-._?=]+\.drv)$/;
const IMMUTABLE = 'public, max-age=31536000, immutable';
const NAR_HEADERS = { 'content-type': 'application/x-nix-nar', 'cache-control': IMMUTABLE, 'accept-ranges': 'bytes' };

function send(req: HttpRequest, res: HttpResponse, status: number, headers: Record<string, string | number>, body: string | Uint8Array): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  res.writeHead(status, { ...headers, 'content-length': bytes.length });
  if (req.method === 'HEAD') res.end();
  else res.end(bytes);
}

function notFound(req: HttpRequest, res: HttpResponse, what: string, maxAge = 60): true {
  send(req, res, 404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': `public, max-age=${maxAge}` }, `${what} not found\n`);
  return true;
}

/**
 * The narinfo text of a hash part as the cache serves it, from the database: the one
 * function a request calls when the text is not in memory. Signed when committed (or by
 * the background signer): a path not signed by the current keys yet is a miss, so no
 * request ever makes the coordinator sign.
 */
export async function storedNarInfo(deps: Pick<CacheRouteDeps, 'db' | 'keys'>, hashPart: string): Promise<RememberedNarInfo | undefined> {
  const [row] = await deps.db.select().from(storePaths).where(eq(storePaths.hashPart, hashPart));
  if (!row) return undefined;
  const signatures = currentSignatures(row, deps.keys);
  if (!signatures) return undefined;
  const others = await deps.db.select().from(narFiles).where(eq(narFiles.path, row.path));
  // Not published yet: rendered from the stored signatures and the files there are.
  const text =
    row.narinfo !== null && row.narinfoSigner === signatures.signatureKey
      ? row.narinfo
      : narInfoText({ ...row, ...signatures }, others, await contentAddressOf(deps.db, row.path));
  return { body: Buffer.from(text), createdAtMs: row.createdAt.getTime(), files: [row.fileName, ...others.map((f) => f.fileName)] };
}

/** A single `bytes=a-b` range, or undefined for the whole file; 'bad' when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'bad' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined; // not a form we serve: send it all
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start > end || start >= size) return 'bad';
  return { start, end };
}

export function cacheRoutes(deps: CacheRouteDeps): HttpRoute {
  const ttl = { ...DEFAULT_CACHE_TTLS, ...deps.ttl };
  const { feed, memory } = deps;
  const nars = deps.openNars;
  const missing = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': `public, max-age=${ttl.missing}` };
  const missingBody = Buffer.from('narinfo not found\n');
  const foundHeaders = (maxAge: number) => ({ 'content-type': 'text/x-nix-narinfo', 'cache-control': `public, max-age=${maxAge}` });
  const found = { old: foundHeaders(ttl.found), fresh: foundHeaders(Math.min(ttl.fresh, ttl.found)) };
  const answer = (req: HttpRequest, res: HttpResponse, info: RememberedNarInfo): true => {
    send(req, res, 200, Date.now() - info.createdAtMs < FRESH_MS ? found.fresh : found.old, info.body);
    return true;
  };
  const miss = (req: HttpRequest, res: HttpResponse): true => {
    send(req, res, 404, missing, missingBody);
    return true;
  };

  const fromDatabase = async (req: HttpRequest, res: HttpResponse, hashPart: string): Promise<true> => {
    const version = feed?.version;
    const info = await storedNarInfo(deps, hashPart);
    if (!info) return miss(req, res);
    // Only what no change has overtaken since it was read.
    if (memory && feed && feed.version === version) memory.set(hashPart, info);
    return answer(req, res, info);
  };

  /**
   * A narinfo: from the index and the texts in memory without awaiting anything (most
   * requests, hits and misses alike), else one query.
   */
  const narinfo = (req: HttpRequest, res: HttpResponse, hashPart: string, waited = false): true | Promise<true> => {
    if (!feed) return fromDatabase(req, res, hashPart);
    if (!feed.index.has(hashPart)) {
      // A change notified but not applied yet may be the path just committed.
      const waking = waited ? undefined : feed.waking;
      return waking ? waking.then(() => narinfo(req, res, hashPart, true)) : miss(req, res);
    }
    // Another replica may have collected it a moment ago: never a narinfo without its NARs.
    // Files here are checked at once; NARs in a blob store are not asked for on every
    // request, so there the row decides (gc removes it before the objects).
    const remembered = deps.storage.servesLocalFiles ? memory?.get(hashPart) : undefined;
    if (remembered) {
      if (remembered.files.every((f) => existsSync(deps.storage.filePath(f)))) return answer(req, res, remembered);
      memory!.delete(hashPart);
    }
    return fromDatabase(req, res, hashPart);
  };

  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const url = req.url ?? '';
    const query = url.indexOf('?');
    const path = query < 0 ? url : url.slice(0, query);
    const m = NARINFO.exec(path);
    if (m) return narinfo(req, res, m[1]!);
    return others(req, res, path);
  };

  async function others(req: HttpRequest, res: HttpResponse, path: string): Promise<boolean> {
    if (path === '/nix-cache-info') {
      const body = `StoreDir: ${deps.storeDir}\nWantMassQuery: 1\nPriority: ${deps.priority ?? 40}\n`;
      send(req, res, 200, { 'content-type': 'text/x-nix-cache-info', 'cache-control': 'public, max-age=300' }, body);
      return true;
    }

    // The Nix key, as users put it in trusted-public-keys (`kiln cache public-key` reads it).
    if (path === '/nix-public-key') {
      send(req, res, 200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'public, max-age=300' }, `${deps.keys.nixPublicKey}\n`);
      return true;
    }

    if (path === '/signing-key.pub') {
      send(req, res, 200, { 'content-type': 'application/octet-stream', 'cache-control': 'public, max-age=300' }, deps.keys.guixPublicKey);
      return true;
    }

    let m: RegExpExecArray | null;
    m = NAR.exec(path);
    if (m && !deps.storage.servesLocalFiles) return blobNar(req, res, m[1]!);
    if (m) {
      const file = await nars.open(m[1]!);
      if (!file) return notFound(req, res, 'NAR');
      let streaming = false;
      try {
        await sendNar(req, res, file.size, (range) => {
          streaming = true;
          return file.stream(range);
        });
        return true;
      } finally {
        // A stream of the kept file releases it when it ends; without one, it is released here.
        if (!streaming) file.done();
      }
    }

    m = LOG.exec(path);
    if (m) {
      const drvPath = `${deps.storeDir}/${m[1]!}`;
      const [latest] = await deps.db
        .select({ buildId: buildAttempts.buildId, attempt: buildAttempts.attempt })
        .from(buildAttempts)
        .innerJoin(builds, eq(builds.id, buildAttempts.buildId))
        .where(and(eq(builds.derivationPath, drvPath), isNotNull(buildAttempts.logSize)))
        .orderBy(desc(buildAttempts.endedAt), desc(buildAttempts.allocatedAt))
        .limit(1);
      if (!latest) return notFound(req, res, 'log');
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'public, max-age=60' });
      if (req.method === 'HEAD') {
        res.end();
        return true;
      }
      await pipeline(Readable.from(deps.logs.read(latest.buildId, latest.attempt)), res as NodeJS.WritableStream).catch(() => undefined);
      return true;
    }
    return false;
  }

  /** A NAR in the blob store: streamed through kiln, or a redirect to the store's own URL where set. */
  async function blobNar(req: HttpRequest, res: HttpResponse, fileName: string): Promise<true> {
    const size = await deps.storage.size(fileName);
    if (size === undefined) return notFound(req, res, 'NAR');
    // Set to redirect (an S3 store's presigned URL): the client downloads from the store.
    const redirect = await deps.storage.readUrl(fileName);
    if (redirect) {
      res.writeHead(302, { location: redirect, 'cache-control': 'no-store' });
      res.end();
      return true;
    }
    await sendNar(req, res, size, (range) => deps.storage.read(fileName, range));
    return true;
  }
}

/**
 * Answers a NAR of `size` bytes: 416 for a range it cannot satisfy, headers alone for HEAD
 * or an empty file, else the bytes `stream` gives for the range (or the whole file). A
 * client that goes away mid-download ends the stream; nothing else is to be done.
 */
async function sendNar(req: HttpRequest, res: HttpResponse, size: number, stream: (range?: { start: number; end: number }) => Readable): Promise<void> {
  const range = parseRange(req.headers.range, size);
  if (range === 'bad') {
    res.writeHead(416, { ...NAR_HEADERS, 'content-range': `bytes */${size}` });
    res.end();
    return;
  }
  if (range) {
    res.writeHead(206, { ...NAR_HEADERS, 'content-length': range.end - range.start + 1, 'content-range': `bytes ${range.start}-${range.end}/${size}` });
  } else {
    res.writeHead(200, { ...NAR_HEADERS, 'content-length': size });
  }
  if (req.method === 'HEAD' || size === 0) {
    res.end();
    return;
  }
  await pipeline(stream(range), res as NodeJS.WritableStream).catch(() => undefined);
}
