// Reading builds: one build with everything about it, and filtered, paged lists.
import { and, asc, desc, eq, exists, gt, inArray, lt, sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { buildAttempts, builds, buildTags, derivationInputs, derivationOutputs, derivations, type BuildState } from '../db/schema.js';
import { invalidArgument, notFound } from '../errors.js';
import { isUuid } from '../uuid.js';
import { successReasonOf } from './cached-builds.js';
import type { Tag } from './tags.js';

export interface OutputRecord {
  name: string;
  path: string;
  hashAlgo: string;
  hash: string;
}

export interface BuildRecord {
  id: string;
  seq: number;
  derivationPath: string;
  system: string;
  /** The derivation's requiredSystemFeatures. */
  requiredFeatures: string[];
  priority: number;
  state: BuildState;
  tags: Tag[];
  outputs: OutputRecord[];
  inputDerivations: string[];
  agentId: string | null;
  createdAt: Date;
  updatedAt: Date;
  endedAt: Date | null;
  derivedPriority: number;
  attemptCount: number;
  timeoutSeconds: number;
  maxSilentSeconds: number;
  notBefore: Date | null;
  waitingInputs: number;
  /** 'dependency-failed' for a build failed because an input will not come (dependency-failures.ts). */
  failureReason: string | null;
  failedInput: string | null;
  failedInputBuild: string | null;
  /** For a reproducibility check's build: the build it checks (reproducibility.ts). */
  checkOf: string | null;
  /** 'cached' for a build that succeeded at submission, its outputs all in the cache (cached-builds.ts). */
  successReason: string | null;
  /** Filled by getBuild(s) only. */
  attempts: AttemptRecord[];
}

export interface AttemptRecord {
  attempt: number;
  agentId: string;
  allocatedAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
  outcome: string | null;
  message: string;
  logSize: number | null;
}

export interface BuildFilter {
  states?: BuildState[];
  tags?: Tag[];
  derivationPath?: string;
  system?: string;
  /** Text the derivation's name holds, in any case. */
  nameContains?: string;
}

export interface PageRequest {
  size?: number;
  token?: string;
  /** The latest submitted first; the token says which order it continues. */
  newestFirst?: boolean;
  /** Leave inputDerivations empty. */
  withoutInputs?: boolean;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export async function getBuild(db: Database, id: string): Promise<BuildRecord> {
  if (!isUuid(id)) throw invalidArgument(`build id ${JSON.stringify(id)} is not a UUID`);
  const found = (await getBuilds(db, [id])).get(id);
  if (!found) throw notFound(`no build with id ${id}`);
  return found;
}

/** Builds with everything about them (attempts included), by id; ids not found are absent. */
export async function getBuilds(db: Database, ids: string[]): Promise<Map<string, BuildRecord>> {
  if (ids.length === 0) return new Map();
  const found = await loadBuilds(db, [sql`${builds.id} = any(${sql.param(ids)}::uuid[])`], ids.length, { attempts: true });
  return new Map(found.map((b) => [b.id, b]));
}

/**
 * A page of builds in submission order, or newest first; the cursor is the last build's
 * sequence number (keyset paging: a page costs the same however deep it is).
 */
export async function listBuilds(db: Database, filter: BuildFilter, page: PageRequest): Promise<{ builds: BuildRecord[]; nextToken: string }> {
  const size = page.size && page.size > 0 ? Math.min(page.size, MAX_PAGE_SIZE) : DEFAULT_PAGE_SIZE;
  const order: Order = page.newestFirst ? 'newest' : 'oldest';
  const where: SQL[] = [];
  if (filter.states?.length) where.push(inArray(builds.state, filter.states));
  if (filter.derivationPath) where.push(eq(builds.derivationPath, filter.derivationPath));
  if (filter.system) where.push(eq(builds.system, filter.system));
  if (filter.nameContains) {
    const pattern = `%${filter.nameContains.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    where.push(exists(db.select({ one: derivations.path }).from(derivations).where(and(eq(derivations.path, builds.derivationPath), sql`${derivations.name} ilike ${pattern}`))));
  }
  for (const tag of filter.tags ?? []) {
    where.push(
      exists(
        db
          .select({ one: buildTags.buildId })
          .from(buildTags)
          .where(and(eq(buildTags.buildId, builds.id), eq(buildTags.key, tag.key), eq(buildTags.value, tag.value))),
      ),
    );
  }
  if (page.token) {
    const seq = decodeCursor(page.token, order);
    where.push(order === 'newest' ? lt(builds.seq, seq) : gt(builds.seq, seq));
  }
  const found = await loadBuilds(db, where, size + 1, { order, inputs: !page.withoutInputs });
  const more = found.length > size;
  const pageBuilds = found.slice(0, size);
  const last = pageBuilds[pageBuilds.length - 1];
  return { builds: pageBuilds, nextToken: more && last ? encodeCursor(last, order) : '' };
}

type Order = 'oldest' | 'newest';
const CURSOR_PREFIX: Record<Order, string> = { oldest: 'seq', newest: 'before' };

function encodeCursor(b: BuildRecord, order: Order): string {
  return Buffer.from(`${CURSOR_PREFIX[order]}:${b.seq}`).toString('base64url');
}

function decodeCursor(token: string, order: Order): number {
  const m = /^(seq|before):(\d{1,15})$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (!m) throw invalidArgument('page_token is not one this coordinator handed out');
  if (m[1] !== CURSOR_PREFIX[order]) {
    throw invalidArgument(`page_token continues a list ${order === 'newest' ? 'in submission order' : 'newest first'}: ask with the same newest_first as the first page`);
  }
  return Number(m[2]);
}

async function loadBuilds(
  db: Database,
  where: SQL[],
  limit: number,
  opts: { attempts?: boolean; order?: Order; inputs?: boolean } = {},
): Promise<BuildRecord[]> {
  const rows = await db
    .select({ build: builds })
    .from(builds)
    .where(and(...where))
    .orderBy(opts.order === 'newest' ? desc(builds.seq) : asc(builds.seq))
    .limit(limit);
  if (rows.length === 0) return [];
  const ids = sql.param(rows.map((r) => r.build.id));
  const drvs = sql.param([...new Set(rows.map((r) => r.build.derivationPath))]);
  const [tags, outputs, inputs, attempts] = await Promise.all([
    db.select().from(buildTags).where(sql`${buildTags.buildId} = any(${ids}::uuid[])`).orderBy(asc(buildTags.key)),
    db.select().from(derivationOutputs).where(sql`${derivationOutputs.derivationPath} = any(${drvs}::text[])`).orderBy(asc(derivationOutputs.name)),
    opts.inputs === false
      ? Promise.resolve([])
      : db
          .selectDistinct({ derivationPath: derivationInputs.derivationPath, inputPath: derivationInputs.inputPath })
          .from(derivationInputs)
          .where(sql`${derivationInputs.derivationPath} = any(${drvs}::text[])`)
          .orderBy(asc(derivationInputs.inputPath)),
    opts.attempts
      ? db.select().from(buildAttempts).where(sql`${buildAttempts.buildId} = any(${ids}::uuid[])`).orderBy(asc(buildAttempts.attempt))
      : Promise.resolve([]),
  ]);
  const tagsOf = groupBy(tags, (t) => t.buildId);
  const outputsOf = groupBy(outputs, (o) => o.derivationPath);
  const inputsOf = groupBy(inputs, (i) => i.derivationPath);
  const attemptsOf = groupBy(attempts, (a) => a.buildId);
  return rows.map(({ build }) => ({
    id: build.id,
    seq: build.seq,
    derivationPath: build.derivationPath,
    system: build.system,
    requiredFeatures: build.requiredFeatures,
    derivedPriority: build.derivedPriority,
    attemptCount: build.attempt,
    timeoutSeconds: build.timeoutSeconds,
    maxSilentSeconds: build.maxSilentSeconds,
    notBefore: build.notBefore,
    waitingInputs: build.waiting,
    failureReason: build.failureReason,
    failedInput: build.failedInput,
    failedInputBuild: build.failedInputBuild,
    checkOf: build.checkOf,
    successReason: successReasonOf(build),
    attempts: (attemptsOf.get(build.id) ?? []).map(({ buildId: _, ...a }) => a),
    priority: build.priority,
    state: build.state,
    agentId: build.agentId,
    createdAt: build.createdAt,
    updatedAt: build.updatedAt,
    endedAt: build.endedAt,
    tags: (tagsOf.get(build.id) ?? []).map(({ key, value }) => ({ key, value })),
    outputs: (outputsOf.get(build.derivationPath) ?? []).map(({ name, path, hashAlgo, hash }) => ({ name, path, hashAlgo, hash })),
    inputDerivations: (inputsOf.get(build.derivationPath) ?? []).map((i) => i.inputPath),
  }));
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
