// The coordinator's Prometheus metrics (/metrics). Counters and histograms are this
// process's own (sum them over replicas); gauges about the queue and the hooks are read
// from the database at scrape time and are the farm's (the same on every replica: take
// one, or max()); agent gauges are the agents whose stream this replica holds.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DatabaseHandle } from '../db/connection.js';
import { hookBacklog, openHookDeliveries, readyBySystem, unfinishedByStateAndSystem } from '../scheduler/queue-summary.js';
import type { AgentSessions } from '../coordinator/agent-sessions.js';
import { checksByState } from '../scheduler/reproducibility.js';

/** prom-client default gauges whose names end in _total, left out (see the constructor). */
const NAMED_LIKE_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export type UploadKind = 'output' | 'source' | 'log';

/**
 * Reads from the database once per scrape however many gauges use it: prom-client
 * collects every metric of a scrape at once, so they share the read in flight.
 */
function perScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => (pending ??= read().finally(() => (pending = undefined)));
}

export class CoordinatorMetrics {
  readonly registry = new Registry();

  readonly submitted = new Counter({
    name: 'kiln_builds_submitted_total',
    help: 'Builds submitted to this coordinator, including those it submitted for missing inputs.',
    registers: [this.registry],
  });
  readonly started = new Counter({
    name: 'kiln_builds_started_total',
    help: 'Build attempts an agent reported started.',
    registers: [this.registry],
  });
  readonly finished = new Counter({
    name: 'kiln_builds_finished_total',
    help: 'Build attempts an agent reported finished, by outcome (success, failure, timeout, silent-timeout).',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly failed = new Counter({
    name: 'kiln_builds_failed_total',
    help: 'Build attempts that failed, by reason (failure, timeout, silent-timeout, setup-failure, missing-inputs).',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly fodChecks = new Counter({
    name: 'kiln_fod_checks_total',
    help: 'Fixed-output re-checks whose end this coordinator recorded, by outcome (passed, failed, canceled).',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly agentFaults = new Counter({
    name: 'kiln_agent_false_missing_inputs_total',
    help: 'Setup failures in which an agent called inputs missing that the cache holds (counted as setup failures, and told to the agent), by agent.',
    labelNames: ['agent_id'],
    registers: [this.registry],
  });
  readonly allocationLatency = new Histogram({
    name: 'kiln_allocation_latency_seconds',
    help: "Time from asking the database for an agent's next builds to their assignments queued on its stream, per claim that found work.",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly assigned = new Counter({
    name: 'kiln_builds_assigned_total',
    help: 'Build attempts assigned to an agent by this coordinator.',
    registers: [this.registry],
  });
  readonly uploadBytes = new Counter({
    name: 'kiln_upload_bytes_total',
    help: 'Bytes stored by completed uploads, by kind: LZ4 frames as sent for outputs and sources, the text for logs.',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly uploadDuration = new Histogram({
    name: 'kiln_upload_duration_seconds',
    help: 'Duration of completed upload calls, by kind (output, source, log).',
    labelNames: ['kind'],
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900],
    registers: [this.registry],
  });

  readonly upstreamLookups = new Counter({
    name: 'kiln_upstream_lookups_total',
    help: 'Narinfo lookups this coordinator made on upstream caches, by upstream and outcome (hit, miss, error).',
    labelNames: ['upstream', 'outcome'],
    registers: [this.registry],
  });

  constructor(database: DatabaseHandle, sessions: AgentSessions, narStorage: { freeBytes(): Promise<number> }) {
    const { db } = database;
    const queue = perScrape(async () => ({ unfinished: await unfinishedByStateAndSystem(db), ready: await readyBySystem(db) }));
    new Gauge({
      name: 'kiln_builds',
      help: 'Unfinished builds in the farm by state (scheduled, allocated, started) and system.',
      labelNames: ['state', 'system'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const r of (await queue()).unfinished) this.set({ state: r.state, system: r.system }, r.count);
      },
    });
    new Gauge({
      name: 'kiln_queue_ready_builds',
      help: 'Scheduled builds an agent could take now (every input in the cache, no backoff), by system.',
      labelNames: ['system'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const r of (await queue()).ready) this.set({ system: r.system }, r.count);
      },
    });
    new Gauge({
      name: 'kiln_queue_oldest_ready_build_age_seconds',
      help: 'Age (since submission) of the oldest build an agent could take now, by system.',
      labelNames: ['system'],
      registers: [this.registry],
      async collect() {
        this.reset();
        const now = Date.now();
        for (const r of (await queue()).ready) this.set({ system: r.system }, Math.max(0, (now - r.oldestCreatedAt.getTime()) / 1000));
      },
    });
    new Gauge({
      name: 'kiln_reproducibility_checks',
      help: 'Reproducibility checks by state (pending, reproducible, unreproducible, failed).',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const r of await checksByState(db)) this.set({ state: r.state }, r.count);
      },
    });
    const backlog = perScrape(() => hookBacklog(db));
    new Gauge({
      name: 'kiln_hook_events_pending',
      help: 'Build events written that the hook runner has not handed to the hooks yet.',
      registers: [this.registry],
      async collect() {
        this.set((await backlog()).pending);
      },
    });
    new Gauge({
      name: 'kiln_hook_oldest_pending_event_age_seconds',
      help: 'Age of the oldest build event the hooks have not processed (0 when none).',
      registers: [this.registry],
      async collect() {
        const oldest = (await backlog()).oldestCreatedAt;
        this.set(oldest ? Math.max(0, (Date.now() - oldest.getTime()) / 1000) : 0);
      },
    });
    new Gauge({
      name: 'kiln_hook_deliveries',
      help: 'Hook deliveries not done, by hook and state (pending, running, parked).',
      labelNames: ['hook', 'state'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const d of await openHookDeliveries(db)) this.set({ hook: d.hook, state: d.state }, d.count);
      },
    });
    new Gauge({
      name: 'kiln_agents_connected',
      help: 'Agents whose control stream this coordinator holds.',
      registers: [this.registry],
      collect() {
        this.set(sessions.all().length);
      },
    });
    const perAgent = (name: string, help: string, value: (s: ReturnType<AgentSessions['all']>[number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['agent_id'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const s of sessions.all()) this.set({ agent_id: s.agentId }, value(s));
        },
      });
    perAgent('kiln_agent_slots', 'Builds a connected agent runs at once (its max parallel builds).', (s) => s.maxParallel);
    perAgent('kiln_agent_free_slots', 'Builds a connected agent may be given now (0 while draining, deactivated or over a load limit).', (s) => s.credit());
    perAgent('kiln_agent_builds_held', 'Builds a connected agent holds.', (s) => s.holding.size);
    perAgent('kiln_agent_load_average', "A connected agent's 1-minute load average, as last reported.", (s) => s.status().loadAverage);
    const pool = (name: string, help: string, value: (p: ReturnType<DatabaseHandle['pool']['snapshot']>) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(value(database.pool.snapshot()));
        },
      });
    pool('kiln_db_pool_max_connections', 'Connections the database pool may open (1 for PGlite).', (p) => p.max);
    pool('kiln_db_pool_connections_in_use', 'Database connections busy with a query or a transaction.', (p) => p.inUse);
    pool('kiln_db_pool_waiting_queries', 'Queries and transactions waiting for a database connection.', (p) => p.waiting);
    new Gauge({
      name: 'kiln_nar_dir_free_bytes',
      help: "Bytes free on the filesystem of this coordinator's NAR directory (what uploads may still use).",
      registers: [this.registry],
      async collect() {
        this.set(await narStorage.freeBytes());
      },
    });
    collectDefaultMetrics({ register: this.registry });
    // prom-client names three gauges like counters, which `promtool check metrics` refuses;
    // each is the sum of its family by type (nodejs_active_handles{type=…} and so on).
    for (const name of NAMED_LIKE_COUNTERS) this.registry.removeSingleMetric(name);
  }

  /** One attempt's final report: counted as finished (with its outcome) and, unless a success, as failed. */
  attemptEnded(outcome: string): void {
    if (['success', 'failure', 'timeout', 'silent-timeout', 'infrastructure', 'output-too-large', 'log-too-large'].includes(outcome)) this.finished.inc({ outcome });
    if (outcome !== 'success') this.failed.inc({ reason: outcome });
  }

  uploaded(kind: UploadKind, bytes: number, seconds: number): void {
    this.uploadBytes.inc({ kind }, bytes);
    this.uploadDuration.observe({ kind }, seconds);
  }

  /** The metrics in Prometheus's text format. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
