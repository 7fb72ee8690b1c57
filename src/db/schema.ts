// The coordinator's tables. One schema and one set of migrations serve PostgreSQL and
// PGlite alike, so nothing here may use a feature only one of them has.
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';

export const buildState = pgEnum('build_state', ['scheduled', 'allocated', 'started', 'succeeded', 'failed', 'canceled']);
export type BuildState = (typeof buildState.enumValues)[number];

/** Every derivation kiln knows, stored once however many builds use it. */
export const derivations = pgTable('derivations', {
  path: text('path').primaryKey(),
  name: text('name').notNull(),
  system: text('system').notNull(),
  /** The .drv file's exact bytes (ATerm is ASCII-safe with escapes, but kept as bytes). */
  text: text('text').notNull(),
  fixedOutput: boolean('fixed_output').notNull().default(false),
  /**
   * Nix's hashDerivationModulo of this derivation (hex, outputs not masked): what a
   * derivation that uses this one needs to check its own output paths, kept so that a
   * submission never re-reads a stored closure.
   */
  hashModulo: text('hash_modulo').notNull(),
  /** Its `requiredSystemFeatures` (Nix's semantics): an agent must support every one. */
  requiredFeatures: text('required_features').array().notNull().default(sql`'{}'::text[]`),
  /**
   * False when the derivation's env says `allowSubstitutes = false`: its outputs are then
   * always built by kiln, never taken from an upstream cache.
   */
  allowSubstitutes: boolean('allow_substitutes').notNull().default(true),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

export const derivationOutputs = pgTable(
  'derivation_outputs',
  {
    derivationPath: text('derivation_path').notNull().references(() => derivations.path),
    name: text('name').notNull(),
    path: text('path').notNull(),
    hashAlgo: text('hash_algo').notNull().default(''),
    hash: text('hash').notNull().default(''),
  },
  (t) => [primaryKey({ columns: [t.derivationPath, t.name] }), index('derivation_outputs_path').on(t.path)],
);

/** Sources (inputSrcs) a derivation needs in the store besides its input derivations' outputs. */
export const derivationSources = pgTable(
  'derivation_sources',
  {
    derivationPath: text('derivation_path').notNull().references(() => derivations.path),
    path: text('path').notNull(),
  },
  (t) => [primaryKey({ columns: [t.derivationPath, t.path] })],
);

/** Edges of the derivation graph: which outputs of which input derivation a derivation uses. */
export const derivationInputs = pgTable(
  'derivation_inputs',
  {
    derivationPath: text('derivation_path').notNull().references(() => derivations.path),
    inputPath: text('input_path').notNull().references(() => derivations.path),
    outputName: text('output_name').notNull(),
  },
  (t) => [primaryKey({ columns: [t.derivationPath, t.inputPath, t.outputName] }), index('derivation_inputs_input').on(t.inputPath)],
);

export const agents = pgTable('agents', {
  id: uuid('id').primaryKey(),
  name: text('name').notNull().default(''),
  active: boolean('active').notNull().default(true),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

/** Agents' passwords, only as scrypt hashes; an agent may have several (rotation). */
export const agentPasswords = pgTable('agent_passwords', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  agentId: uuid('agent_id').notNull().references(() => agents.id),
  hash: text('hash').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index('agent_passwords_agent').on(t.agentId)]);

export const agentTags = pgTable(
  'agent_tags',
  {
    agentId: uuid('agent_id').notNull().references(() => agents.id),
    key: text('key').notNull(),
    value: text('value').notNull(),
  },
  (t) => [primaryKey({ columns: [t.agentId, t.key] })],
);

/**
 * Tokens agents register themselves with (`kiln agent token new`). Only the SHA-256 of
 * the secret is kept: the secret is 32 random bytes, so a slow hash adds nothing.
 */
export const agentRegistrationTokens = pgTable('agent_registration_tokens', {
  id: uuid('id').primaryKey(),
  hash: text('hash').notNull().unique(),
  /** The tags every agent registered with it gets: [{ key, value }]. */
  tags: jsonb('tags').$type<{ key: string; value: string }[]>().notNull().default([]),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  expiresAt: timestamp('expires_at', { withTimezone: true }),
  revokedAt: timestamp('revoked_at', { withTimezone: true }),
  registrations: integer('registrations').notNull().default(0),
});

export const builds = pgTable(
  'builds',
  {
    id: uuid('id').primaryKey(),
    /** Submission order; what paging goes by (timestamps tie, and lose precision in JS). */
    seq: bigserial('seq', { mode: 'number' }).notNull().unique(),
    derivationPath: text('derivation_path').notNull().references(() => derivations.path),
    /** The derivation's system, copied here so that the ready-queue index can use it. */
    system: text('system').notNull().default(''),
    /**
     * The derivation's required system features, copied here like `system` so that the
     * claim checks them on the row it reads anyway (see scheduler/placement.ts).
     */
    requiredFeatures: text('required_features').array().notNull().default(sql`'{}'::text[]`),
    priority: integer('priority').notNull().default(0),
    /**
     * The highest of this build's priority and the derived priority of every build that
     * waits on one of its outputs: what allocation orders by (see scheduler/priorities.ts).
     */
    derivedPriority: integer('derived_priority').notNull().default(0),
    /** How many input paths (build_waits rows) are not in the cache yet; 0 means ready. */
    waiting: integer('waiting').notNull().default(0),
    /** A retry's backoff: not allocated before this time. */
    notBefore: timestamp('not_before', { withTimezone: true }),
    /** Limits the agent enforces; 0 means the farm's default. */
    timeoutSeconds: integer('timeout_seconds').notNull().default(0),
    maxSilentSeconds: integer('max_silent_seconds').notNull().default(0),
    state: buildState('state').notNull().default('scheduled'),
    agentId: uuid('agent_id').references(() => agents.id),
    /** How many times the build was handed to an agent. */
    attempt: integer('attempt').notNull().default(0),
    /**
     * While allocated or started: until when the build stays with its agent when that
     * agent's stream is gone. Null while the agent is connected.
     */
    leaseUntil: timestamp('lease_until', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    endedAt: timestamp('ended_at', { withTimezone: true }),
    /**
     * Why a failed build failed when no attempt of its own says it: 'dependency-failed'
     * (an input's producer failed for good; see scheduler/dependency-failures.ts). Null otherwise.
     */
    failureReason: text('failure_reason'),
    /** For dependency-failed: the input path that will not come, and the build that failed to make it. */
    failedInput: text('failed_input'),
    failedInputBuild: uuid('failed_input_build'),
    /**
     * For a reproducibility check's build: the build whose outputs it builds again on
     * another agent (scheduler/reproducibility.ts). Its outputs are never served.
     */
    checkOf: uuid('check_of'),
  },
  (t) => [
    // Dependency-failed builds by the input they wait for: what an input's return revives.
    index('builds_failed_input').on(t.failedInput).where(sql`${t.failedInput} is not null`),
    index('builds_derivation').on(t.derivationPath),
    // The queue: only unfinished builds, so the index stays small as history grows.
    index('builds_unfinished').on(t.state).where(sql`${t.state} in ('scheduled', 'allocated', 'started')`),
    // The claim's path: ready builds in the order they are handed out. Builds leave it
    // when allocated, so it holds only what agents could take now.
    index('builds_ready')
      .on(t.system, t.derivedPriority.desc(), t.seq)
      .where(sql`${t.state} = 'scheduled' and ${t.waiting} = 0`),
    index('builds_agent').on(t.agentId).where(sql`${t.state} in ('allocated', 'started')`),
    index('builds_check_of').on(t.checkOf).where(sql`${t.checkOf} is not null`),
  ],
);

/**
 * What a scheduled build still waits for: input paths (outputs of input derivations,
 * and sources) that are not in the cache. A row goes when its path arrives.
 */
export const buildWaits = pgTable(
  'build_waits',
  {
    buildId: uuid('build_id').notNull().references(() => builds.id, { onDelete: 'cascade' }),
    path: text('path').notNull(),
    /**
     * The build asked for builds of its missing inputs, and this path's upstream lookup is
     * not decided yet: a build for the path's derivation is submitted only once every
     * upstream said it lacks the path (scheduler/upstream-waits.ts).
     */
    submitOnMiss: boolean('submit_on_miss').notNull().default(false),
  },
  (t) => [primaryKey({ columns: [t.buildId, t.path] }), index('build_waits_path').on(t.path)],
);

/**
 * The upstream caches the farm is configured with, in priority order (written by each
 * coordinator as it starts, so that replicas and SQL see one list).
 */
export const upstreams = pgTable('upstreams', {
  url: text('url').primaryKey(),
  position: integer('position').notNull(),
  /** Used for outputs of inputs (readiness) and/or for .drv files (submission by path). */
  forOutputs: boolean('for_outputs').notNull(),
  forDerivations: boolean('for_derivations').notNull(),
});

/**
 * What an upstream said of a store path, remembered until expires_at: 'hit' (a narinfo
 * signed by a key trusted for it), 'miss' (none, or one that does not verify), 'error'
 * (could not tell: down, 5xx; asked again sooner). Shared by replicas.
 */
export const upstreamLookups = pgTable(
  'upstream_lookups',
  {
    upstream: text('upstream').notNull(),
    path: text('path').notNull(),
    outcome: text('outcome').notNull(),
    /** Why a miss or an error, for people. */
    reason: text('reason').notNull().default(''),
    checkedAt: timestamp('checked_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.path, t.upstream] })],
);

/** Agents a build must not go to again (its outputs could not be deleted there). */
export const buildExclusions = pgTable(
  'build_exclusions',
  {
    buildId: uuid('build_id').notNull().references(() => builds.id, { onDelete: 'cascade' }),
    agentId: uuid('agent_id').notNull().references(() => agents.id),
    reason: text('reason').notNull().default(''),
  },
  // A group's claim asks whether any of its agents has an exclusion (allocation.ts).
  (t) => [primaryKey({ columns: [t.buildId, t.agentId] }), index('build_exclusions_agent').on(t.agentId)],
);

export const buildTags = pgTable(
  'build_tags',
  {
    buildId: uuid('build_id').notNull().references(() => builds.id, { onDelete: 'cascade' }),
    key: text('key').notNull(),
    value: text('value').notNull(),
  },
  (t) => [primaryKey({ columns: [t.buildId, t.key] }), index('build_tags_key_value').on(t.key, t.value)],
);

/**
 * Events, written in the same transaction as the state change they report, and
 * processed by hooks afterwards (at least once).
 */
export const events = pgTable(
  'events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    type: text('type').notNull(),
    buildId: uuid('build_id'),
    agentId: uuid('agent_id'),
    payload: jsonb('payload').notNull().default({}),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    /** When the hook runner made its deliveries (one per hook that takes its type). */
    processedAt: timestamp('processed_at', { withTimezone: true }),
  },
  (t) => [index('events_unprocessed').on(t.id).where(sql`${t.processedAt} is null`)],
);

export const deliveryState = pgEnum('delivery_state', ['pending', 'running', 'done', 'parked']);
export type DeliveryState = (typeof deliveryState.enumValues)[number];

/**
 * One event for one hook: handled at least once. A running delivery whose lease ran out
 * (its coordinator died) is taken again; a failing one is retried with backoff and, after
 * the hook's limit, parked until an operator retries it.
 */
export const hookDeliveries = pgTable(
  'hook_deliveries',
  {
    hook: text('hook').notNull(),
    eventId: bigint('event_id', { mode: 'number' }).notNull().references(() => events.id, { onDelete: 'cascade' }),
    state: deliveryState('state').notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    runAfter: timestamp('run_after', { withTimezone: true }).notNull().defaultNow(),
    leaseUntil: timestamp('lease_until', { withTimezone: true }),
    lastError: text('last_error').notNull().default(''),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.hook, t.eventId] }),
    // What a hook's workers claim from: only what is not done.
    index('hook_deliveries_open').on(t.hook, t.runAfter, t.eventId).where(sql`${t.state} in ('pending', 'running')`),
    index('hook_deliveries_event').on(t.eventId),
  ],
);

/** Every attempt at a build: which agent, when, and how it ended. */
export const buildAttempts = pgTable(
  'build_attempts',
  {
    buildId: uuid('build_id').notNull().references(() => builds.id, { onDelete: 'cascade' }),
    attempt: integer('attempt').notNull(),
    agentId: uuid('agent_id').notNull().references(() => agents.id),
    allocatedAt: timestamp('allocated_at', { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    endedAt: timestamp('ended_at', { withTimezone: true }),
    /** success, failure, timeout, silent-timeout, setup-failure, agent-lost, canceled; null while running. */
    outcome: text('outcome'),
    message: text('message').notNull().default(''),
    /** Uncompressed size of the attempt's log, once it arrived. */
    logSize: bigint('log_size', { mode: 'number' }),
  },
  (t) => [primaryKey({ columns: [t.buildId, t.attempt] })],
);

/**
 * The narinfo signatures of a path, made when it is committed (never on request, so a
 * client cannot make the coordinator sign), by the keys `signature_key` names
 * (CacheKeys.fingerprint): the Nix `Sig:` value and the Guix `Signature:` value. Both
 * cover only the signed fields, not the NAR files, so new compressions re-sign nothing.
 */
function narinfoSignatureColumns() {
  return {
    nixSignature: text('nix_signature'),
    guixSignature: text('guix_signature'),
    signatureKey: text('signature_key'),
  };
}

/**
 * Store paths the binary cache holds: build outputs uploaded by agents, and .drv files
 * and sources that submissions brought. A path here counts as available to builds.
 */
export const storePaths = pgTable('store_paths', {
  path: text('path').primaryKey(),
  /** The 32 base32 characters after the store dir, as narinfo requests name it. */
  hashPart: text('hash_part').notNull().unique(),
  narHash: text('nar_hash').notNull(),
  narSize: bigint('nar_size', { mode: 'number' }).notNull(),
  references: text('references').array().notNull().default(sql`'{}'::text[]`),
  deriver: text('deriver').notNull().default(''),
  /** The NAR as stored: file name under nar/, its compression, hash and size. */
  fileName: text('file_name').notNull(),
  compression: text('compression').notNull(),
  fileHash: text('file_hash').notNull(),
  fileSize: bigint('file_size', { mode: 'number' }).notNull(),
  /** The build whose output this is, when an agent built it here. */
  buildId: uuid('build_id'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  /**
   * The narinfo text, rendered once by the publish hook from the stored signatures; null
   * until then, and the cache renders it on request from them meanwhile.
   */
  narinfo: text('narinfo'),
  /** Which keys signed `narinfo` (CacheKeys.fingerprint): a text signed by other keys is not served. */
  narinfoSigner: text('narinfo_signer'),
  ...narinfoSignatureColumns(),
}, (t) => [
  // Garbage collection asks whether a file under nar/ is still named by a row.
  index('store_paths_file_name').on(t.fileName),
  // The background signer looks for rows not signed by the current keys.
  index('store_paths_signature_key').on(t.signatureKey),
]);

/**
 * Every insert, delete and new narinfo of a store_paths row, in the order they were made
 * (written by triggers on store_paths, in the writer's transaction, whoever the writer
 * is): each coordinator replays it to keep its in-memory index of hash parts and its
 * narinfo texts current (substitutes/store-path-feed.ts). `present` says whether the
 * path is there after the change. Rows older than an hour are pruned.
 */
export const storePathChanges = pgTable('store_path_changes', {
  seq: bigserial('seq', { mode: 'number' }).primaryKey(),
  hashPart: text('hash_part').notNull(),
  present: boolean('present').notNull(),
  at: timestamp('at', { withTimezone: true }).notNull().default(sql`clock_timestamp()`),
}, (t) => [index('store_path_changes_at').on(t.at)]);

/**
 * Outputs an attempt uploaded that are not served yet: they become store_paths rows
 * together, in the statement that accepts the attempt's success, and go when the attempt
 * ends otherwise (scheduler/pending-outputs.ts). The NAR file is under nar/ already, named
 * by its hash, but no narinfo names it until then; garbage collection keeps it meanwhile.
 */
export const pendingOutputs = pgTable(
  'pending_outputs',
  {
    buildId: uuid('build_id').notNull().references(() => builds.id, { onDelete: 'cascade' }),
    attempt: integer('attempt').notNull(),
    name: text('name').notNull(),
    path: text('path').notNull(),
    hashPart: text('hash_part').notNull(),
    narHash: text('nar_hash').notNull(),
    narSize: bigint('nar_size', { mode: 'number' }).notNull(),
    references: text('references').array().notNull().default(sql`'{}'::text[]`),
    deriver: text('deriver').notNull().default(''),
    fileName: text('file_name').notNull(),
    compression: text('compression').notNull(),
    fileHash: text('file_hash').notNull(),
    fileSize: bigint('file_size', { mode: 'number' }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    // Signed at upload, so that the output is served signed the moment it is released.
    ...narinfoSignatureColumns(),
  },
  (t) => [primaryKey({ columns: [t.buildId, t.attempt, t.name] }), index('pending_outputs_file_name').on(t.fileName)],
);

/**
 * The NAR of a stored path in the cache's other compressions (the one in store_paths is
 * the LZ4 file as uploaded), made by the publish hook; removed with the path.
 */
export const narFiles = pgTable(
  'nar_files',
  {
    path: text('path').notNull().references(() => storePaths.path, { onDelete: 'cascade' }),
    compression: text('compression').notNull(),
    fileName: text('file_name').notNull(),
    fileHash: text('file_hash').notNull(),
    fileSize: bigint('file_size', { mode: 'number' }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.path, t.compression] }), index('nar_files_file_name').on(t.fileName)],
);

/**
 * Re-checks of fixed-output derivations (qa/fod-checks.ts): each is a build of the
 * derivation, run with its outputs deleted on the agent so that the source is fetched
 * again and its hash checked. The check's build never replaces the served output (a path
 * served keeps its row); its outcome is recorded here when the build ends.
 */
export const fodChecks = pgTable(
  'fod_checks',
  {
    buildId: uuid('build_id').primaryKey().references(() => builds.id, { onDelete: 'cascade' }),
    derivationPath: text('derivation_path').notNull().references(() => derivations.path),
    requestedAt: timestamp('requested_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
    /** null while the build runs; 'passed', 'failed' or 'canceled' once it ended. */
    outcome: text('outcome'),
    /** For a failure: the fetcher's message (the attempt's). */
    message: text('message').notNull().default(''),
  },
  (t) => [
    // The last check of each derivation: what the age filter and the schedule read.
    index('fod_checks_derivation').on(t.derivationPath, t.requestedAt),
    // Checks still running: what the schedule's concurrency counts.
    index('fod_checks_open').on(t.requestedAt).where(sql`${t.outcome} is null`),
  ],
);

export const reproducibilityState = pgEnum('reproducibility_state', ['pending', 'reproducible', 'unreproducible', 'failed']);
export type ReproducibilityState = (typeof reproducibilityState.enumValues)[number];

/**
 * A build asked to be built on `wanted` distinct agents in all (itself included), their
 * outputs compared by NAR hash: distinct agents, or with `by_tag`, agents that differ in
 * that tag's value. Decided once `wanted` results are in (check_outputs), or failed when
 * a check build failed for good.
 */
export const reproducibilityChecks = pgTable('reproducibility_checks', {
  buildId: uuid('build_id').primaryKey().references(() => builds.id, { onDelete: 'cascade' }),
  wanted: integer('wanted').notNull(),
  byTag: text('by_tag').notNull().default(''),
  state: reproducibilityState('state').notNull().default('pending'),
  /** Why a failed check failed, for people. */
  message: text('message').notNull().default(''),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  decidedAt: timestamp('decided_at', { withTimezone: true }),
});

/**
 * The outputs each agent made for a checked build: position 1 is the build's own (what
 * the cache serves), 2 and on the check builds' in the order they succeeded. A check
 * build's NAR is under nar/ by its hash like any other, named by no narinfo: it is
 * reachable at /qa/<build>/<position>/<output>.nar and kept by gc while its row is; the
 * rows go when gc removes the output's path from the cache.
 */
export const checkOutputs = pgTable(
  'check_outputs',
  {
    buildId: uuid('build_id').notNull().references(() => builds.id, { onDelete: 'cascade' }),
    position: integer('position').notNull(),
    /** The build that made it: the checked build itself at position 1, else a check build. */
    checkBuildId: uuid('check_build_id').notNull(),
    agentId: uuid('agent_id'),
    /** The agent's value of the check's by_tag when it built it ('' without one). */
    tagValue: text('tag_value').notNull().default(''),
    name: text('name').notNull(),
    path: text('path').notNull(),
    narHash: text('nar_hash').notNull(),
    narSize: bigint('nar_size', { mode: 'number' }).notNull(),
    fileName: text('file_name').notNull(),
    compression: text('compression').notNull(),
    fileSize: bigint('file_size', { mode: 'number' }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.buildId, t.position, t.name] }),
    index('check_outputs_file_name').on(t.fileName),
    // Garbage collection removes a check's results with the checked output's path.
    index('check_outputs_path').on(t.path),
  ],
);
