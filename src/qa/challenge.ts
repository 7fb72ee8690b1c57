// Challenging other caches, as `guix challenge` does: for the store paths kiln built, the
// NAR hash of kiln's narinfo beside the one each other cache's narinfo gives. The same
// hash is a match; another is a mismatch (the output is not reproducible, or one of the
// two caches is wrong); no narinfo is a path that cache lacks. A cache that cannot answer
// is an error for that path, never a failed challenge.
import { and, desc, eq, exists, isNotNull, type SQL } from 'drizzle-orm';
import { fetchNarInfoText } from '../cache/upstreams/upstream-client.js';
import type { Upstream } from '../cache/upstreams/upstream-list.js';
import type { Database } from '../db/connection.js';
import { builds, buildTags, storePaths } from '../db/schema.js';
import { invalidArgument } from '../errors.js';
import { Hash } from '../store/hash.js';
import { judgeNarInfo } from '../store/narinfo-trust.js';
import { parseNarInfo } from '../store/narinfo.js';
import type { Tag } from '../scheduler/tags.js';

export type Verdict = 'match' | 'mismatch' | 'missing' | 'error';

export interface CacheVerdict {
  cache: string;
  verdict: Verdict;
  /** The other cache's NAR hash and size (match, mismatch). */
  narHash?: string;
  narSize?: number;
  /** Signed by a key trusted for it (only a configured upstream has keys). */
  trusted: boolean;
  reason: string;
}

export interface ChallengedPath {
  storePath: string;
  derivationPath: string;
  buildId: string;
  narHash: string;
  narSize: number;
  verdicts: CacheVerdict[];
}

export interface ChallengeSummary {
  cache: string;
  matches: number;
  mismatches: number;
  missing: number;
  errors: number;
}

export interface ChallengeReport {
  paths: ChallengedPath[];
  summaries: ChallengeSummary[];
}

export interface ChallengeRequest {
  /** Base URLs; empty: `upstreams` (those used for outputs). */
  caches: string[];
  tags: Tag[];
  limit?: number;
}

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10_000;
/** Narinfo requests in flight at once, over every cache. */
const PARALLEL = 16;

/** A cache to challenge: its URL, and the keys trusted for it when it is a configured upstream. */
interface Challenged {
  url: string;
  upstream?: Upstream;
}

export async function challengeCaches(db: Database, upstreams: readonly Upstream[], req: ChallengeRequest, signal?: AbortSignal): Promise<ChallengeReport> {
  const caches = cachesToChallenge(req.caches, upstreams);
  const limit = req.limit && req.limit > 0 ? req.limit : DEFAULT_LIMIT;
  if (limit > MAX_LIMIT) throw invalidArgument(`limit ${limit}: at most ${MAX_LIMIT} paths are challenged at once`);
  const paths = await builtPaths(db, req.tags, limit);
  const challenged: ChallengedPath[] = paths.map((p) => ({ ...p, verdicts: [] }));
  const jobs = challenged.flatMap((path) => caches.map((cache, i) => ({ path, cache, i })));
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      job.path.verdicts[job.i] = await verdictOf(job.cache, job.path, signal);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, jobs.length) }, worker));
  const summaries = caches.map((cache, i) => {
    const count = (v: Verdict) => challenged.filter((p) => p.verdicts[i]!.verdict === v).length;
    return { cache: cache.url, matches: count('match'), mismatches: count('mismatch'), missing: count('missing'), errors: count('error') };
  });
  return { paths: challenged, summaries };
}

function cachesToChallenge(urls: string[], upstreams: readonly Upstream[]): Challenged[] {
  if (urls.length === 0) {
    const configured = upstreams.filter((u) => u.forOutputs);
    if (configured.length === 0) throw invalidArgument('no cache to challenge: name one (--upstream URL) or configure upstreams for outputs');
    return configured.map((u) => ({ url: u.url, upstream: u }));
  }
  const seen = new Set<string>();
  return urls.map((text, i) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw invalidArgument(`caches[${i}]: ${JSON.stringify(text)} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidArgument(`caches[${i}]: ${text} must be http:// or https://`);
    const base = text.replace(/\/+$/, '');
    if (seen.has(base)) throw invalidArgument(`caches[${i}]: ${base} is given twice`);
    seen.add(base);
    return { url: base, upstream: upstreams.find((u) => u.url === base) };
  });
}

/** Outputs kiln's agents built (not sources nor .drv files), the most recent first. */
async function builtPaths(db: Database, tags: Tag[], limit: number): Promise<Omit<ChallengedPath, 'verdicts'>[]> {
  const where: SQL[] = [isNotNull(storePaths.buildId)];
  for (const tag of tags) {
    where.push(
      exists(
        db.select({ one: buildTags.buildId }).from(buildTags)
          .where(and(eq(buildTags.buildId, storePaths.buildId), eq(buildTags.key, tag.key), eq(buildTags.value, tag.value))),
      ),
    );
  }
  const rows = await db
    .select({ storePath: storePaths.path, derivationPath: builds.derivationPath, buildId: storePaths.buildId, narHash: storePaths.narHash, narSize: storePaths.narSize })
    .from(storePaths)
    .innerJoin(builds, eq(builds.id, storePaths.buildId))
    .where(and(...where))
    .orderBy(desc(storePaths.createdAt), storePaths.path)
    .limit(limit);
  return rows.map((r) => ({ ...r, buildId: r.buildId! }));
}

async function verdictOf(cache: Challenged, path: Omit<ChallengedPath, 'verdicts'>, signal?: AbortSignal): Promise<CacheVerdict> {
  const base = { cache: cache.url, trusted: false, reason: '' };
  const fetched = await fetchNarInfoText(cache.url, path.storePath, signal);
  if (fetched.kind === 'absent') return { ...base, verdict: 'missing', reason: 'no narinfo (404)' };
  if (fetched.kind === 'error') return { ...base, verdict: 'error', reason: fetched.reason };
  let theirs;
  try {
    theirs = parseNarInfo(fetched.text);
  } catch (err) {
    return { ...base, verdict: 'error', reason: `${fetched.url}: not a narinfo: ${(err as Error).message}` };
  }
  if (theirs.storePath !== path.storePath) return { ...base, verdict: 'error', reason: `${fetched.url} describes ${theirs.storePath}, not ${path.storePath}` };
  let same: boolean;
  try {
    same = Hash.parse(theirs.narHash).equals(Hash.parse(path.narHash));
  } catch (err) {
    return { ...base, verdict: 'error', reason: `${fetched.url}: NarHash ${theirs.narHash}: ${(err as Error).message}` };
  }
  const judged = cache.upstream ? judgeNarInfo(fetched.text, path.storePath, cache.upstream.keys) : undefined;
  return {
    ...base,
    verdict: same ? 'match' : 'mismatch',
    narHash: theirs.narHash,
    narSize: theirs.narSize,
    trusted: judged?.trusted ?? false,
    reason: judged && !judged.trusted ? judged.reason : '',
  };
}
