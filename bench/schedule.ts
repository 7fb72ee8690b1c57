// Benchmark: scheduling (issue 6). A queue of builds in a distribution-shaped graph
// (schedule-dag.ts), submitted through the AdminService; then simulated agents over real
// streams (schedule-farm.ts) build all of it while every assignment is timed.
//
//   PostgreSQL: one coordinator process, then three replicas on copies of the same
//   queue (CREATE DATABASE … TEMPLATE), agents spread across them.
//   PGlite: one coordinator process on its embedded database.
//   Anchor: graphile-worker claims and completes as many empty jobs on the same
//   PostgreSQL with its default settings; kiln's rate is reported as a ratio of it.
//
// The coordinators are `kiln coordinator` processes as in production, at the default
// log level. KILN_BENCH_COORDINATOR_NODE_ARGS (e.g. '--cpu-prof --cpu-prof-dir=/tmp/prof')
// is passed to them; KILN_BENCH_PG_STATEMENTS=1 prints PostgreSQL's busiest statements
// after each run (pg_stat_statements), and KILN_BENCH_PG_AUTO_EXPLAIN=<ms> has the server
// log the plans (analyzed, with buffers) of statements slower than that, in a file the
// benchmark names.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import postgres from 'postgres';
import { createAdminClient } from '../sdk/typescript/src/index.js';
import { startCoordinatorProcess, type CoordinatorProcess } from '../test/helpers/coordinator-process.js';
import { benchGraphile, type GraphileReport } from './graphile-anchor.js';
import { createDatabase, dropDatabase, startPostgres, type PostgresServer } from '../test/helpers/postgres-server.js';
import { loadDag, type DagShape } from './schedule-dag.js';
import { runFarm, type FarmRun } from './schedule-farm.js';
import { createAgents, submitDag, type AgentCredentials, type Submission } from './schedule-queue.js';

export type Engine = 'postgres' | 'pglite';

export interface BenchScheduleOptions {
  builds?: number;
  agents?: number;
  slots?: number;
  replicas?: number;
  engines?: Engine[];
  /** Run graphile-worker beside kiln (default true). */
  anchor?: boolean;
  /** Submissions in flight (default 16). */
  submitConcurrency?: number;
  /** Where the graph is kept between runs (default `bench-data/`). */
  dataDir?: string;
  log?: (line: string) => void;
}

export interface EngineReport {
  engine: Engine;
  submission: Submission;
  runs: FarmRun[];
}

export interface BenchScheduleReport {
  dag: Omit<DagShape, 'nodes'> & { builds: number; outputs: number };
  graphile?: GraphileReport;
  engines: EngineReport[];
  /** Load average (1, 5, 15 minutes) when the benchmark started. */
  loadAtStart: number[];
}

export async function benchSchedule(options: BenchScheduleOptions = {}): Promise<BenchScheduleReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const builds = options.builds ?? 100_000;
  const agentCount = options.agents ?? 500;
  const slots = options.slots ?? 4;
  const replicas = options.replicas ?? 3;
  const engines = options.engines ?? ['postgres', 'pglite'];
  const loadAtStart = loadavg();
  log(`load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}`);

  const made = performance.now();
  const { nodes, ...shape } = loadDag(resolve(options.dataDir ?? 'bench-data'), builds);
  const outputs = nodes.reduce((sum, node) => sum + node.outputs.length, 0);
  log(`graph: ${nodes.length} derivations, ${shape.edges} edges, ${outputs} outputs, depth ${shape.depth}, ` +
    `${(100 * shape.upToTenInputs).toFixed(1)} % with ≤ 10 inputs, most dependents ${shape.maxDependents} (${((performance.now() - made) / 1000).toFixed(1)} s)`);
  const report: BenchScheduleReport = { dag: { ...shape, builds: nodes.length, outputs }, engines: [], loadAtStart };

  const common = { nodes, agentCount, slots, concurrency: options.submitConcurrency ?? 16, log };
  let server: PostgresServer | undefined;
  try {
    if (engines.includes('postgres')) {
      const statements = process.env.KILN_BENCH_PG_STATEMENTS === '1';
      server = await startPostgres(serverOptions(statements, process.env.KILN_BENCH_PG_AUTO_EXPLAIN, log));
      if (options.anchor ?? true) {
        log('\n-- graphile-worker: empty jobs, default settings --');
        report.graphile = await benchGraphile(server.url, nodes.length);
        log(`  ${report.graphile.jobs} jobs in ${report.graphile.seconds.toFixed(1)} s: ${report.graphile.jobsPerSecond.toFixed(0)} jobs/s`);
      }
      report.engines.push(await benchPostgres(server, { ...common, replicas, statements }));
    }
    if (engines.includes('pglite')) report.engines.push(await benchPglite(common));
  } finally {
    await server?.stop();
  }
  return report;
}

/** The server's extra settings for pg_stat_statements and auto_explain, when asked for. */
function serverOptions(statements: boolean, explainMs: string | undefined, log: (line: string) => void): Parameters<typeof startPostgres>[0] {
  const libraries = [...(statements ? ['pg_stat_statements'] : []), ...(explainMs ? ['auto_explain'] : [])];
  const settings: Record<string, string> = libraries.length > 0 ? { shared_preload_libraries: libraries.join(',') } : {};
  if (!explainMs) return { settings };
  // Outside the server's directory, which goes with it.
  const logFile = join(mkdtempSync(join(tmpdir(), 'kiln-bench-pg-log-')), 'postgresql.log');
  log(`PostgreSQL's log (plans of statements over ${explainMs} ms): ${logFile}`);
  return { logFile, settings: {
    ...settings,
    'auto_explain.log_min_duration': explainMs,
    'auto_explain.log_analyze': 'on',
    'auto_explain.log_buffers': 'on',
    'auto_explain.log_nested_statements': 'on',
    // Row-lock waits count in a statement's time too: name those past deadlock_timeout (1 s).
    log_lock_waits: 'on',
  } };
}

interface EngineOptions {
  nodes: DagShape['nodes'];
  agentCount: number;
  slots: number;
  concurrency: number;
  log: (line: string) => void;
}

const nodeArgs = () => (process.env.KILN_BENCH_COORDINATOR_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);

/** Agents and the queue, through a coordinator on `databaseUrl` (PGlite in `dataDir` if none). */
async function fillQueue(dataDir: string, databaseUrl: string | undefined, opts: EngineOptions): Promise<{ agents: AgentCredentials[]; submission: Submission; coordinator: CoordinatorProcess }> {
  const coordinator = await startCoordinatorProcess({ dataDir, databaseUrl, nodeArgs: nodeArgs() });
  const admin = createAdminClient(coordinator.url, readFileSync(join(dataDir, 'admin-token'), 'utf8').trim());
  const t = performance.now();
  const agents = await createAgents(admin, opts.agentCount);
  opts.log(`  ${agents.length} agents created (${((performance.now() - t) / 1000).toFixed(1)} s)`);
  const submission = await submitDag(admin, opts.nodes, {
    singles: 2_000,
    concurrency: opts.concurrency,
    batch: 1_000,
    progress: (done, rate) => opts.log(`  submitted ${done} (${rate.toFixed(0)}/s)`),
  });
  const { single, batched } = submission;
  opts.log(`  submitted: ${single.builds} one by one in ${single.seconds.toFixed(1)} s (${single.perSecond.toFixed(0)}/s), ` +
    `${batched.builds} in batches of 1,000 in ${batched.seconds.toFixed(1)} s (${batched.perSecond.toFixed(0)}/s)`);
  return { agents, submission, coordinator };
}

async function benchPostgres(server: PostgresServer, opts: EngineOptions & { replicas: number; statements: boolean }): Promise<EngineReport> {
  opts.log('\n-- kiln on PostgreSQL --');
  const dataDir = mkdtempSync(join(tmpdir(), 'kiln-bench-schedule-pg-'));
  const queue = 'kiln_bench_queue';
  await dropDatabase(server.url, queue);
  try {
    const queueUrl = await createDatabase(server.url, queue);
    if (opts.statements) await resetStatements(queueUrl);
    const { agents, submission, coordinator } = await fillQueue(dataDir, queueUrl, opts);
    await coordinator.stop();
    if (opts.statements) await printStatements(queueUrl, opts.nodes.length, opts.log);
    const runs: FarmRun[] = [];
    for (const count of [...new Set([1, opts.replicas])]) {
      // Every run starts from the same queue: a copy of the database as submitted.
      const name = `kiln_bench_run_${count}`;
      await dropDatabase(server.url, name);
      const url = await createDatabase(server.url, name, queue);
      if (opts.statements) await resetStatements(url);
      const coordinators = await Promise.all(
        Array.from({ length: count }, () => startCoordinatorProcess({ dataDir, databaseUrl: url, nodeArgs: nodeArgs() })),
      );
      try {
        runs.push(await farmOn(coordinators, agents, submission, opts, server.pid));
      } finally {
        await Promise.all(coordinators.map((c) => c.stop()));
      }
      if (opts.statements) await printStatements(url, opts.nodes.length, opts.log);
      await dropDatabase(server.url, name);
    }
    return { engine: 'postgres', submission, runs };
  } finally {
    await dropDatabase(server.url, queue);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function benchPglite(opts: EngineOptions): Promise<EngineReport> {
  opts.log('\n-- kiln on PGlite --');
  const dataDir = mkdtempSync(join(tmpdir(), 'kiln-bench-schedule-pglite-'));
  try {
    const { agents, submission, coordinator } = await fillQueue(dataDir, undefined, opts);
    try {
      return { engine: 'pglite', submission, runs: [await farmOn([coordinator], agents, submission, opts)] };
    } finally {
      await coordinator.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** A run of the farm against running coordinators; when it fails, what they said. */
async function farmOn(
  coordinators: CoordinatorProcess[],
  agents: AgentCredentials[],
  submission: Submission,
  opts: EngineOptions,
  postgresPid?: number,
): Promise<FarmRun> {
  const count = coordinators.length;
  opts.log(`  ${count} coordinator${count > 1 ? 's' : ''}, ${agents.length} agents of ${opts.slots} slots:`);
  try {
    const run = await runFarm({
      urls: coordinators.map((c) => c.url),
      coordinatorPids: coordinators.map((c) => c.child.pid!),
      postgresPid,
      agents,
      slots: opts.slots,
      nodes: opts.nodes,
      ids: submission.ids,
      log: opts.log,
    });
    opts.log(describeRun(run));
    return run;
  } catch (err) {
    for (const c of coordinators) opts.log(`coordinator ${c.url} said:\n${c.stderr().slice(-8000)}`);
    throw err;
  }
}

export function describeRun(run: FarmRun): string {
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  const perBuild = (s: number) => `${((1000 * s) / run.builds).toFixed(2)} ms`;
  return [
    `  ${run.builds} builds in ${run.seconds.toFixed(1)} s (agents connected in ${run.connectSeconds.toFixed(1)} s); sustained ${run.sustainedPerSecond.toFixed(0)} assignments/s`,
    `  scheduling latency (steady part) p50 ${ms(run.schedulingLatency.p50)}, p90 ${ms(run.schedulingLatency.p90)}, p99 ${ms(run.schedulingLatency.p99)}, max ${ms(run.schedulingLatency.max)}` +
      `; every build: p50 ${ms(run.schedulingLatencyAll.p50)}, p99 ${ms(run.schedulingLatencyAll.p99)}`,
    `  ready → assigned, waiting for slots included: p50 ${ms(run.queueLatency.p50)}, p99 ${ms(run.queueLatency.p99)}; ${run.assignedBeforeSeenReady} assigned before the agent saw them ready`,
    `  CPU per build: coordinators ${perBuild(run.cpu.coordinators)}, PostgreSQL ${run.cpu.postgres === undefined ? '-' : perBuild(run.cpu.postgres)}, ` +
      `agents (this process) ${perBuild(run.cpu.bench)}; machine busy ${((100 * run.cpu.machineBusy) / run.cpu.machineCapacity).toFixed(0)} %, load ${run.loadAverage.map((l) => l.toFixed(2)).join(' ')}`,
  ].join('\n');
}

async function resetStatements(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`create extension if not exists pg_stat_statements`;
    await sql`select pg_stat_statements_reset()`;
  } finally {
    await sql.end();
  }
}

/**
 * The statements that took most of the server's time; per build (of `builds`) and, as a
 * measure of work that the machine's load does not inflate, buffers touched per call.
 */
async function printStatements(url: string, builds: number, log: (line: string) => void): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<{ calls: string; total: number; mean: number; rows: number; buffers: number; query: string }[]>`
      select calls::text, total_exec_time as total, mean_exec_time as mean, rows::float8 / calls as rows,
        (shared_blks_hit + shared_blks_read + local_blks_hit + local_blks_read)::float8 / calls as buffers, query
      from pg_stat_statements order by total_exec_time desc limit 15`;
    log('  busiest statements (total ms, calls, mean ms, ms per build, rows per call, buffers per call):');
    for (const r of rows) {
      const figures = [r.total.toFixed(0).padStart(8), r.calls.padStart(8), r.mean.toFixed(3).padStart(8), (r.total / builds).toFixed(3).padStart(7),
        r.rows.toFixed(1).padStart(7), r.buffers.toFixed(0).padStart(7)];
      log(`    ${figures.join(' ')}  ${r.query.replace(/\s+/g, ' ').slice(0, 160)}`);
    }
  } finally {
    await sql.end();
  }
}
