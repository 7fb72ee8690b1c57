// Asks the upstream caches about the paths builds wait on, apart from submission and
// from claims: rounds of a batch of paths each (bounded concurrency, kept-alive
// connections), answers remembered in the database with their lifetimes; a hit releases
// the waits as an arrival does, a path that no upstream has gets the builds that were
// deferred on it. Woken after submissions, and by a timer for answers that expire.
import type { Database } from '../db/connection.js';
import type { Logger } from '../logger.js';
import { lookUp, type LookupOutcome } from '../cache/upstreams/upstream-client.js';
import { recordLookups, type LookupRecord } from '../cache/upstreams/lookup-records.js';
import type { Upstream } from '../cache/upstreams/upstream-list.js';
import { releaseUpstreamHits, settleWaits } from '../scheduler/availability.js';
import { submitForDecidedMisses } from '../scheduler/new-builds.js';
import { pathsToLookUp } from '../scheduler/upstream-waits.js';
import type { CoordinatorMetrics } from '../telemetry/metrics.js';

export interface LookupLifetimes {
  /** How long a hit is believed (default 24 h). */
  hitMs: number;
  /** How long a miss (or an answer that does not verify) stands (default 10 min). */
  missMs: number;
  /** How soon an upstream that could not answer is asked again (default 1 min). */
  errorMs: number;
}

export const DEFAULT_LOOKUP_LIFETIMES: LookupLifetimes = { hitMs: 24 * 3600_000, missMs: 10 * 60_000, errorMs: 60_000 };

export interface UpstreamLookupsOptions {
  db: Database;
  upstreams: readonly Upstream[];
  lifetimes: LookupLifetimes;
  log: Logger;
  metrics?: CoordinatorMetrics;
  /** Builds that became ready. */
  ready(buildIds: string[]): void;
  /** Builds submitted for inputs no upstream has. */
  submitted(buildIds: string[]): void;
  /** A round's answers are remembered and acted on. */
  answered?(): void;
  /** Paths per round (default 256) and requests at once (default 8). */
  batch?: number;
  concurrency?: number;
  /** How often it looks without being woken (default 5 s). */
  pollMs?: number;
}

export class UpstreamLookups {
  private readonly stop = new AbortController();
  private loop: Promise<void> | undefined;
  private wanted = false;
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Per upstream, what it last did wrong (logged once until it answers well again). */
  private readonly trouble = new Map<string, string>();
  private readonly byUrl: Map<string, Upstream>;

  constructor(private readonly opts: UpstreamLookupsOptions) {
    this.byUrl = new Map(opts.upstreams.filter((u) => u.forOutputs).map((u) => [u.url, u]));
  }

  start(): void {
    if (this.byUrl.size === 0 || this.loop) return;
    this.timer = setInterval(() => this.poke(), this.opts.pollMs ?? 5_000);
    this.timer.unref();
    this.loop = this.run();
    this.poke();
  }

  /** New waits may need asking about. */
  poke(): void {
    this.wanted = true;
    this.wake?.();
  }

  async close(): Promise<void> {
    this.stop.abort();
    clearInterval(this.timer);
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.stop.signal;
    while (!signal.aborted) {
      if (!this.wanted) await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
      if (signal.aborted) break;
      this.wanted = false;
      try {
        // A full batch means there may be more: go on without waiting for a wake-up.
        if ((await this.round(signal)) === (this.opts.batch ?? 256)) this.wanted = true;
      } catch (err) {
        if (signal.aborted) break;
        this.opts.log.error({ err }, 'upstream lookups: a round failed; trying again at the next wake-up');
      }
    }
  }

  /** One batch: ask, remember, release, submit. Returns how many paths it asked about. */
  private async round(signal: AbortSignal): Promise<number> {
    const { db, lifetimes } = this.opts;
    const todo = await pathsToLookUp(db, this.opts.batch ?? 256);
    if (todo.length === 0) return 0;
    const records: LookupRecord[] = [];
    const hits: string[] = [];
    const misses: string[] = [];
    await eachLimited(todo, this.opts.concurrency ?? 8, async ({ path, ask }) => {
      let decided = true;
      for (const url of ask) {
        const upstream = this.byUrl.get(url);
        if (!upstream) continue; // listed by another replica's configuration
        const answer = await lookUp(upstream, path, signal);
        if (signal.aborted) return;
        this.account(upstream, answer);
        const ttlMs = answer.outcome === 'hit' ? lifetimes.hitMs : answer.outcome === 'miss' ? lifetimes.missMs : lifetimes.errorMs;
        records.push({ upstream: url, path, outcome: answer.outcome, reason: answer.outcome === 'hit' ? '' : answer.reason, ttlMs });
        if (answer.outcome === 'hit') {
          hits.push(path);
          return;
        }
        if (answer.outcome === 'error') decided = false;
      }
      if (decided) misses.push(path);
    });
    if (signal.aborted) return todo.length;
    await recordLookups(db, records);
    const ready = await releaseUpstreamHits(db, hits);
    if (ready.length > 0) this.opts.ready(ready);
    if (misses.length > 0) {
      const created = await db.transaction((tx) => submitForDecidedMisses(tx, misses));
      if (created.length > 0) {
        const settled = await settleWaits(db, created);
        this.opts.submitted(created);
        if (settled.length > 0) this.opts.ready(settled);
        this.wanted = true; // their own inputs need asking about
      }
    }
    this.opts.answered?.();
    return todo.length;
  }

  /**
   * Which of `paths` some upstream has (a narinfo that verifies), asked now, in the
   * upstreams' order; the answers are remembered as a round's are. An upstream that
   * cannot answer has nothing. For SubmitBuild's existing_outputs = UPSTREAM.
   */
  async whichHave(paths: readonly string[]): Promise<Set<string>> {
    const signal = this.stop.signal;
    const have = new Set<string>();
    if (this.byUrl.size === 0 || signal.aborted) return have;
    const records: LookupRecord[] = [];
    const { lifetimes } = this.opts;
    await eachLimited(paths, this.opts.concurrency ?? 8, async (path) => {
      for (const upstream of this.byUrl.values()) {
        const answer = await lookUp(upstream, path, signal);
        if (signal.aborted) return;
        this.account(upstream, answer);
        const ttlMs = answer.outcome === 'hit' ? lifetimes.hitMs : answer.outcome === 'miss' ? lifetimes.missMs : lifetimes.errorMs;
        records.push({ upstream: upstream.url, path, outcome: answer.outcome, reason: answer.outcome === 'hit' ? '' : answer.reason, ttlMs });
        if (answer.outcome === 'hit') {
          have.add(path);
          return;
        }
      }
    });
    if (!signal.aborted) await recordLookups(this.opts.db, records);
    return have;
  }

  /** Counts the answer, and logs an upstream's first trouble of a kind (and its recovery). */
  private account(upstream: Upstream, answer: LookupOutcome): void {
    this.opts.metrics?.upstreamLookups.inc({ upstream: upstream.url, outcome: answer.outcome });
    const untrusted = answer.outcome === 'miss' && !answer.reason.startsWith('no narinfo');
    const kind = answer.outcome === 'error' ? 'error' : untrusted ? 'untrusted' : undefined;
    const before = this.trouble.get(upstream.url);
    if (kind && before !== kind) {
      this.trouble.set(upstream.url, kind);
      const reason = (answer as { reason: string }).reason;
      if (kind === 'error') this.opts.log.warn({ upstream: upstream.url, reason }, 'upstream cache does not answer; its paths count as unavailable until it does');
      else this.opts.log.warn({ upstream: upstream.url, reason }, 'upstream cache served a narinfo kiln does not trust; that path counts as not there');
    } else if (!kind && before === 'error') {
      this.trouble.delete(upstream.url);
      this.opts.log.info({ upstream: upstream.url }, 'upstream cache answers again');
    }
  }
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
