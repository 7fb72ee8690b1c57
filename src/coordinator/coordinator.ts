// The coordinator process: database, RPC services and HTTP routes on one port, and an
// orderly shutdown (stop accepting, finish what is in flight, close the database).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { ConnectRouter } from '@connectrpc/connect';
import type { DescService } from '@bufbuild/protobuf';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { specGrpcMessages } from './grpc-message.js';
import { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import { AgentService, ConnectResponseSchema } from '../../gen/kiln/v1/agent_pb.js';
import { openDatabase, type DatabaseHandle, type DatabaseOptions } from '../db/connection.js';
import { startEmbeddedMaintenance } from '../db/embedded-maintenance.js';
import { LogStorage } from '../storage/log-storage.js';
import { loadCacheKeys } from '../substitutes/cache-keys.js';
import { pathSigner, startSignatureBackfill } from '../substitutes/narinfo-signer.js';
import { signatureCount } from '../substitutes/narinfo-text.js';
import { Counter } from 'prom-client';
import { cacheRoutes, type CacheTtls } from '../substitutes/cache-routes.js';
import { OpenNars } from '../substitutes/open-nars.js';
import { NarInfoMemory } from '../substitutes/narinfo-memory.js';
import { StorePathFeed } from '../substitutes/store-path-feed.js';
import { checkRoutes } from '../qa/check-routes.js';
import { NarStorage } from '../storage/nar-storage.js';
import { openBlobStore, type BlobStoreLocation, type S3Credentials } from '../storage/blob-store-url.js';
import { createLogger, type Logger } from '../logger.js';
import { loadOrCreateAdminToken, loadOrCreateDashboardToken } from './admin-token.js';
import { adminService } from './admin-service.js';
import { checkAgentPassword } from './agent-registry.js';
import { AgentSessions } from './agent-sessions.js';
import { agentStream } from './agent-stream.js';
import { agentUploads } from './agent-uploads.js';
import { agentRegistration } from './agent-registration.js';
import { checkRegistrationToken } from './registration-tokens.js';
import { Authenticator } from './auth.js';
import { LoginThrottle } from './login-throttle.js';
import { requestGate } from './request-gate.js';
import { refuseUnparsableRequests } from './parse-errors.js';
import { inputLimits, messageLimit, type InputLimits } from '../protocol/limits.js';
import { DEFAULT_SIZE_LIMITS, type SizeLimits } from '../protocol/size-limits.js';
import { errorInterceptor } from './connect-errors.js';
import { BuildEvents } from './build-events.js';
import { Dispatcher } from './dispatcher.js';
import { FarmSignals, type AgentSignal } from './farm-signals.js';
import { chainRoutes, healthRoute, type HttpRequest, type HttpResponse } from './http-routes.js';
import { HookRunner } from '../hooks/runner.js';
import { StandaloneEvents } from './standalone-events.js';
import { hooksFromSpecs, type HookSpec } from '../hooks/hook-specs.js';
import { createAdminClient } from '../../sdk/typescript/src/index.js';
import { NO_LOAD_LIMITS, type AgentSessions as Sessions, type LoadLimits } from './agent-sessions.js';
import { priorityFirst, type AllocationPolicy } from '../scheduler/allocation.js';
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from '../scheduler/retry-policy.js';
import { listen, type IdleTimeouts, type Listener, type RequestHandler } from './listener.js';
import { dashboardRoute } from './dashboard-route.js';
import { metricsRoute } from './metrics-route.js';
import { BuildTelemetry } from '../telemetry/build-telemetry.js';
import { CoordinatorMetrics } from '../telemetry/metrics.js';
import { checkCompressionTools, defaultCompressions, type Compression } from '../substitutes/compressions.js';
import { DEFAULT_PUBLISH_LIMITS, publishHook, type PublishLimits } from '../substitutes/publish.js';
import { DEFAULT_RETENTION, type RetentionRules } from '../substitutes/retention.js';
import type { Upstream } from '../cache/upstreams/upstream-list.js';
import { storeUpstreamList } from '../cache/upstreams/lookup-records.js';
import { derivationsByPath } from './derivations-by-path.js';
import { DEFAULT_LOOKUP_LIFETIMES, UpstreamLookups, type LookupLifetimes } from './upstream-lookups.js';
import { fodCheckHook } from '../qa/fod-check-results.js';
import { FodCheckScheduler, type FodCheckSchedule } from '../qa/fod-check-schedule.js';

export const DEFAULT_PORT = 8745;
export const COORDINATOR_VERSION = '0.1.0';

export interface CoordinatorOptions {
  host?: string;
  port?: number;
  database: DatabaseOptions;
  /** Where the admin token, keys, logs and (by default) NARs live. */
  dataDir: string;
  /** Where NARs live (default: DATA_DIR/nars); with an s3:// narStore, where uploads are staged. */
  narDir?: string;
  /** Where finished NARs live: a directory (as narDir), or S3-compatible object storage. */
  narStore?: BlobStoreLocation;
  /** Credentials for an s3:// narStore (the configuration file's); without them the AWS_* variables. */
  narStoreCredentials?: S3Credentials;
  /** Seconds a NAR download redirected to the store's presigned URL may use it (default 0: kiln streams NARs). */
  narRedirectSeconds?: number;
  /** Uploads are refused while the NAR directory's filesystem has less free than this (default 0: never). */
  minFreeNarBytes?: number;
  /** The largest NAR of one output taken, uncompressed (default DEFAULT_SIZE_LIMITS, 2 GiB; 0: no limit). */
  maxOutputBytes?: number;
  /** The longest log of one attempt taken, uncompressed (default DEFAULT_SIZE_LIMITS, 64 MiB; 0: no limit). */
  maxLogBytes?: number;
  /** The store directory the farm builds for (default /nix/store; Guix uses /gnu/store). */
  storeDir?: string;
  /** Signing keys as their tools write them; generated into DATA_DIR when not given. */
  nixKeyFile?: string;
  guixKeyFile?: string;
  adminToken?: string;
  /** The dashboard's read-only token; generated into DATA_DIR when not given. */
  dashboardToken?: string;
  tls?: { certFile: string; keyFile: string };
  log?: Logger;
  /** How long an agent's builds wait for it after its stream ends (default 5 minutes). */
  leaseMs?: number;
  /** How often the dispatcher looks for work unprompted and expires leases. */
  dispatchIntervalMs?: number;
  /** Which ready builds an agent gets (default: priority first). */
  allocationPolicy?: AllocationPolicy;
  /** When failed attempts are tried again (default: DEFAULT_RETRY_POLICY). */
  retryPolicy?: RetryPolicy;
  /** When an agent takes no more builds whatever its free slots (default: no limits). */
  loadLimits?: LoadLimits;
  /** Time limits for builds that set none (default: none). */
  defaultLimits?: { timeoutSeconds: number; maxSilentSeconds: number };
  /**
   * Submit builds for the inputs of a submitted build that no build makes (default true:
   * submitting the top of a closure builds the closure).
   */
  submitMissingInputs?: boolean;
  /** Operators' hooks: commands and modules run on events, at least once each. */
  hooks?: HookSpec[];
  /**
   * The built-in publish hook (other compressions and a signed narinfo made once per
   * output): its limits, or false to leave publishing to an operator's hook (default on).
   */
  publish?: false | Partial<PublishLimits>;
  /** The NAR compressions the cache keeps (default: defaultCompressions(storeDir)). */
  compressions?: Compression[];
  /** What garbage collection keeps (default DEFAULT_RETENTION). */
  retention?: RetentionRules;
  /** Cache-Control max-age of narinfos (cache.ttl, cache.freshTtl, cache.negativeTtl), in seconds. */
  cacheTtls?: Partial<CacheTtls>;
  /** How often the hook runner looks for due deliveries unprompted (default 1 s). */
  hookPollMs?: number;
  /** How long a claimed hook delivery is this coordinator's without a renewal (default 30 s; see hooks/runner.ts). */
  hookLeaseMs?: number;
  /** What one request may carry (default DEFAULT_INPUT_LIMITS). */
  limits?: InputLimits;
  /** How long a connection may say nothing (default IDLE_TIMEOUTS). */
  idleTimeouts?: Partial<IdleTimeouts>;
  /** How failed logins are slowed (tests use their own clock). */
  loginThrottle?: LoginThrottle;
  /** Upstream caches, in priority order (cache/upstreams/upstream-list.ts). */
  upstreams?: Upstream[];
  /** How long their answers are remembered (default DEFAULT_LOOKUP_LIFETIMES). */
  upstreamLifetimes?: Partial<LookupLifetimes>;
  /** How often upstream lookups look for paths unprompted (default 5 s). */
  upstreamPollMs?: number;
  /** Fixed-output re-checks on a schedule (qa.fodCheck); none when unset. */
  fodCheck?: FodCheckSchedule;
  /** How often the schedule looks for due checks unprompted (default a minute, or `every` if shorter). */
  fodCheckPollMs?: number;
}

export type CoordinatorState = 'starting' | 'running' | 'stopping' | 'stopped';

export interface Coordinator {
  /** Base URL clients use, e.g. http://127.0.0.1:8745 */
  url: string;
  port: number;
  adminToken: string;
  /** The read-only token the dashboard (and anything that only reads) uses. */
  dashboardToken: string;
  metrics: CoordinatorMetrics;
  /** The cache's Nix public key (`name:base64`), for clients' trusted-public-keys. */
  nixPublicKey: string;
  /** Resolves when the start-up signing of paths without current signatures is done, with their count. */
  signaturesBackfilled: Promise<number>;
  database: DatabaseHandle;
  sessions: AgentSessions;
  dispatcher: Dispatcher;
  events: BuildEvents;
  hooks: HookRunner;
  state(): CoordinatorState;
  stop(): Promise<void>;
}

export async function startCoordinator(opts: CoordinatorOptions): Promise<Coordinator> {
  let state: CoordinatorState = 'starting';
  const log = opts.log ?? createLogger({ name: 'kiln-coordinator' });
  const adminToken = loadOrCreateAdminToken(opts.dataDir, opts.adminToken);
  const dashboardToken = loadOrCreateDashboardToken(opts.dataDir, opts.dashboardToken);
  const keys = loadCacheKeys({ dataDir: opts.dataDir, nixKeyFile: opts.nixKeyFile, guixKeyFile: opts.guixKeyFile });
  // Narinfos are signed as paths are committed, never on request.
  const sign = pathSigner(keys);
  const storeDir = opts.storeDir ?? '/nix/store';
  const compressions = opts.compressions ?? defaultCompressions(storeDir);
  // Before anything starts: a missing zstd program is said now, not at the first build.
  if (opts.publish !== false) await checkCompressionTools(compressions);
  const database = await openDatabase(opts.database);
  const { db } = database;
  const narBlobs = opts.narStore?.kind === 's3' ? await openBlobStore(opts.narStore, { credentials: opts.narStoreCredentials }) : undefined;
  const narDir = opts.narStore?.kind === 'fs' ? opts.narStore.dir : (opts.narDir ?? join(opts.dataDir, 'nars'));
  const storage = await NarStorage.open(narDir, { minFreeBytes: opts.minFreeNarBytes, blobs: narBlobs, redirectSeconds: opts.narRedirectSeconds });
  const logs = await LogStorage.open(join(opts.dataDir, 'logs'));
  const sessions = new AgentSessions();
  const events = new BuildEvents();
  const signals = new FarmSignals(database, log);
  // Narinfo hits and misses from memory, kept current through store_path_changes.
  const narinfoMemory = new NarInfoMemory();
  const openNars = new OpenNars(storage);
  const feed = new StorePathFeed(database, log.child({ part: 'cache-index' }), (hashPart) => narinfoMemory.delete(hashPart));
  await feed.start();
  const metrics = new CoordinatorMetrics(database, sessions, storage);
  const telemetry = new BuildTelemetry({ db, metrics, events, log });
  countNarInfoSignatures(metrics);
  const reports = { retry: opts.retryPolicy ?? DEFAULT_RETRY_POLICY, leaseMs: opts.leaseMs ?? 5 * 60_000 };
  const dispatcher = new Dispatcher({
    db,
    sessions,
    log,
    events,
    signals,
    reports,
    policy: opts.allocationPolicy ?? priorityFirst,
    intervalMs: opts.dispatchIntervalMs,
    // PGlite runs one statement at a time whatever we do; PostgreSQL claims for several agents at once.
    concurrency: database.kind === 'postgres' ? 8 : 1,
    defaultLimits: opts.defaultLimits,
    telemetry,
  });
  await signals.start({ work: () => dispatcher.poke(), agent: (signal) => tellAgent(sessions, signal, dispatcher, log) });
  const upstreams = opts.upstreams ?? [];
  await storeUpstreamList(db, upstreams);
  const lookups = new UpstreamLookups({
    db,
    upstreams,
    lifetimes: { ...DEFAULT_LOOKUP_LIFETIMES, ...opts.upstreamLifetimes },
    log: log.child({ part: 'upstreams' }),
    metrics,
    pollMs: opts.upstreamPollMs,
    ready: (buildIds) => {
      events.emit({ kind: 'upstream-answers', ready: buildIds });
      dispatcher.workAvailable();
    },
    answered: () => events.emit({ kind: 'upstream-answers', ready: [] }),
    submitted: (buildIds) => {
      for (const buildId of buildIds) events.emit({ buildId, kind: 'submitted' });
      dispatcher.workAvailable();
    },
  });
  // New waits (submissions, requeued builds) may be on paths an upstream has.
  events.on((change) => {
    if (change.kind === 'submitted' || change.kind === 'requeued') lookups.poke();
  });
  let url = '';
  const fodSchedule = opts.fodCheck
    ? new FodCheckScheduler({
        deps: { db, storage, sign },
        schedule: opts.fodCheck,
        log: log.child({ part: 'fod-checks' }),
        pollMs: opts.fodCheckPollMs,
        submitted: (buildIds) => {
          for (const buildId of buildIds) events.emit({ buildId, kind: 'submitted' });
          dispatcher.workAvailable();
        },
      })
    : undefined;
  const fodChecks = fodCheckHook(db, (check) => {
    metrics.fodChecks.inc({ outcome: check.outcome });
    log.info({ buildId: check.buildId, derivation: check.derivationPath, outcome: check.outcome, message: check.message }, 'fixed-output re-check ended');
    // Its events are for the operators' hooks; the schedule may start the next check.
    hooks.poke();
    fodSchedule?.poke();
  });
  const builtIn = [...(opts.publish === false ? [] : [publishHook({ db, storage, keys, compressions }, { ...DEFAULT_PUBLISH_LIMITS, ...opts.publish })]), fodChecks];
  // Module hooks get an AdminService client of this coordinator, once it listens.
  const operators = await hooksFromSpecs(opts.hooks ?? [], () => createAdminClient(url, adminToken), builtIn.map((h) => h.name)).catch(async (err: unknown) => {
    await dispatcher.stop();
    await signals.stop();
    await feed.stop();
    await database.close();
    throw err;
  });
  const hookList = [...builtIn, ...operators];
  const hooks = new HookRunner({ db, hooks: hookList, log: log.child({ part: 'hooks' }), pollMs: opts.hookPollMs, leaseMs: opts.hookLeaseMs });
  // Every change this process makes may have written events.
  events.on(() => hooks.poke());
  const agentEvents = new StandaloneEvents(db, log.child({ part: 'events' }), (e) => events.emit({ kind: 'agent', agentId: e.agentId ?? '' }));

  const limits = opts.limits ?? inputLimits();
  const sizeLimits: SizeLimits = {
    maxOutputBytes: opts.maxOutputBytes ?? DEFAULT_SIZE_LIMITS.maxOutputBytes,
    maxLogBytes: opts.maxLogBytes ?? DEFAULT_SIZE_LIMITS.maxLogBytes,
  };
  const routes = (router: ConnectRouter) => {
    serveWithLimits(
      router,
      limits,
      AdminService,
      adminService(db, storage, { submitMissingInputs: opts.submitMissingInputs ?? true, retention: opts.retention ?? DEFAULT_RETENTION, log, keyFingerprint: keys.fingerprint, limits, beforeUnlink: () => feed.catchUp(), byPath: derivationsByPath(db, upstreams), sign, upstreamHas: (paths) => lookups.whichHave(paths), upstreams }, {
        buildsChanged: () => dispatcher.workAvailable(),
        buildsSubmitted: (buildIds) => {
          for (const buildId of buildIds) events.emit({ buildId, kind: 'submitted' });
          if (buildIds.length > 0) dispatcher.workAvailable();
        },
        buildCanceled: (buildId, agentId) => {
          events.emit({ buildId, kind: 'canceled' });
          if (!agentId) return;
          void signals
            .toAgent({ agentId, kind: 'cancel', buildId, reason: 'canceled by an operator' })
            .catch((err: unknown) => log.error({ err, buildId }, 'could not tell the agent of a cancel'));
        },
        toAgent: (signal) => signals.toAgent(signal),
        eventsRetried: () => hooks.poke(),
      }, { sessions, telemetry, logs }),
    );
    serveWithLimits(router, limits, AgentService, {
      ...agentUploads({ db, storage, sign, logs, dispatcher, log, telemetry, sizeLimits }),
      ...agentRegistration(db, log),
      connect: agentStream({
        db,
        storage,
        sign,
        sizeLimits,
        sessions,
        dispatcher,
        log,
        version: COORDINATOR_VERSION,
        reports,
        loadLimits: opts.loadLimits ?? NO_LOAD_LIMITS,
        heartbeatIntervalMs: 10_000,
        cache: () => ({ url, publicKey: keys.nixPublicKey }),
        substituters: upstreams.filter((u) => u.forOutputs).map((u) => ({ url: u.url, publicKeys: u.publicKeys })),
        events,
        agentEvents,
        telemetry,
        limits,
      }),
    });
    refuseUnparsableRequests(router);
  };
  const fallback = chainRoutes(
    [
      // The cache first: its narinfos are most of what the port is asked, and no other route takes its paths.
      cacheRoutes({ db, storage, logs, keys, storeDir, feed, memory: narinfoMemory, openNars, ttl: opts.cacheTtls }),
      healthRoute(() => state === 'running'),
      metricsRoute(metrics),
      dashboardRoute(),
      checkRoutes({ db, storage }),
    ],
    (err) => log.error({ err }, 'HTTP route failed'),
  );
  const authenticator = new Authenticator({ adminToken, dashboardToken, checkAgentPassword: (id, pw) => checkAgentPassword(db, id, pw),
    checkRegistrationToken: (secret) => checkRegistrationToken(db, secret),
    throttle: opts.loginThrottle });
  const gate = requestGate(authenticator, log);
  const handler = connectNodeAdapter({
    routes,
    fallback,
    // gzip only what is worth it: large admin answers (ListBuilds), not the control
    // stream's assignments of a few KiB, hundreds a second (connect's default is 1 KiB).
    compressMinBytes: 16 << 10,
    interceptors: [errorInterceptor(log)],
    contextValues: (req) => gate.contextValues(req),
  });

  const tls = opts.tls ? { cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) } : undefined;
  let listener: Listener;
  try {
    listener = await listen(plainOrRpc(fallback, gate.handler(specGrpcMessages(handler))), { host: opts.host ?? '127.0.0.1', port: opts.port ?? DEFAULT_PORT, tls, pingIntervalMs: 10_000, timeouts: opts.idleTimeouts });
  } catch (err) {
    telemetry.stop();
    await dispatcher.stop();
    await signals.stop();
    await feed.stop();
    await database.close();
    throw err;
  }
  const host = listener.address.address.includes(':') ? `[${listener.address.address}]` : listener.address.address;
  url = `${tls ? 'https' : 'http'}://${host}:${listener.address.port}`;
  state = 'running';
  hooks.start();
  lookups.start();
  fodSchedule?.start();
  // PostgreSQL's autovacuum does this for a server; PGlite has none.
  const maintenance = database.kind === 'pglite' ? startEmbeddedMaintenance(db, log.child({ part: 'maintenance' })) : undefined;
  // Paths stored before signatures were (or under other keys): until signed, a miss.
  const backfill = startSignatureBackfill(db, keys, log.child({ part: 'signatures' }));
  log.info({ url, database: database.kind, hooks: hookList.map((h) => h.name) }, 'coordinator running');

  let stopping: Promise<void> | undefined;
  return {
    url,
    port: listener.address.port,
    adminToken,
    dashboardToken,
    metrics,
    nixPublicKey: keys.nixPublicKey,
    signaturesBackfilled: backfill.done,
    database,
    sessions,
    dispatcher,
    events,
    hooks,
    state: () => state,
    stop() {
      stopping ??= (async () => {
        state = 'stopping';
        listener.stopAccepting();
        // Each step logged: a shutdown that hangs says where.
        log.info('stopping: dispatcher');
        await dispatcher.stop();
        log.info('stopping: signature backfill');
        await backfill.stop();
        log.info('stopping: fixed-output re-check schedule');
        await fodSchedule?.stop();
        log.info('stopping: upstream lookups');
        await lookups.close();
        log.info('stopping: hook deliveries');
        await hooks.stop();
        log.info('stopping: replica signals');
        await signals.stop();
        await feed.stop();
        sessions.closeAll('the coordinator is shutting down');
        log.info('stopping: connections');
        await listener.close();
        openNars.close();
        telemetry.stop();
        log.info('stopping: events not written yet');
        await agentEvents.stop();
        log.info('stopping: database');
        await maintenance?.stop();
        await database.close();
        narBlobs?.close();
        state = 'stopped';
        log.info('coordinator stopped');
      })();
      return stopping;
    },
  };
}

/** kiln_narinfo_signatures_total: made at commit, by publish or the backfill, never on request. */
function countNarInfoSignatures(metrics: CoordinatorMetrics): void {
  new Counter({
    name: 'kiln_narinfo_signatures_total',
    help: 'Narinfo signatures (a Nix and a Guix one each) this process made: at commit, by the publish hook or by the backfill.',
    registers: [metrics.registry],
    collect() {
      this.reset();
      this.inc(signatureCount.made);
    },
  });
}

/**
 * Registers a service method by method, each with its own message limit: connect-node's
 * readMaxBytes is otherwise one figure for every call, and SubmitBuilds needs more than
 * GetBuild. Over the limit, connect refuses with RESOURCE_EXHAUSTED from the message's
 * length prefix, before reading the message.
 */
function serveWithLimits<S extends DescService>(router: ConnectRouter, limits: InputLimits, service: S, impl: Partial<Record<string, unknown>>): void {
  for (const method of service.methods) {
    const fn = impl[method.localName];
    if (fn === undefined) continue;
    router.rpc(method, fn as Parameters<ConnectRouter['rpc']>[1], { readMaxBytes: messageLimit(limits, method.name) });
  }
}

/** Acts on a signal for an agent if its stream is on this coordinator (else another replica does). */
function tellAgent(sessions: Sessions, signal: AgentSignal, dispatcher: Dispatcher, log: Logger): void {
  const session = sessions.get(signal.agentId);
  if (!session) return;
  switch (signal.kind) {
    case 'cancel':
      session.released(signal.buildId);
      session.outbox.push(create(ConnectResponseSchema, { message: { case: 'cancelBuild', value: { buildId: signal.buildId, reason: signal.reason } } }));
      dispatcher.poke();
      return;
    case 'drain':
      session.draining = true;
      session.outbox.push(create(ConnectResponseSchema, { message: { case: 'drain', value: {} } }));
      log.info({ agentId: signal.agentId }, 'agent told to drain');
      return;
    case 'set-active':
      session.active = signal.active;
      if (signal.active) dispatcher.poke();
      return;
  }
}

/**
 * GET and HEAD requests (the binary cache, metrics, the dashboard's files) go straight to
 * the plain routes: gRPC and Connect calls are POSTs (no method of kiln's API is marked
 * for Connect's GET), so the credential gate, the grpc-message rewriting and Connect's
 * router have nothing to do for them, and a narinfo from memory is answered sooner.
 */
function plainOrRpc(plain: (req: HttpRequest, res: HttpResponse) => void, rpc: RequestHandler): RequestHandler {
  return (req, res) => (req.method === 'GET' || req.method === 'HEAD' ? plain(req, res) : rpc(req, res));
}
