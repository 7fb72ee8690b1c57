// What tracing costs the coordinator: assignment throughput (builds handed to agents,
// reported started, their output uploaded and reported finished, per second) with
// tracing off and with it on, exporting every span over OTLP/HTTP (protobuf, the SDK's
// default) to a receiver on this machine. Rounds alternate off/on on fresh in-memory
// databases so that drift hits both; the best round of each is compared.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../src/coordinator/coordinator.js';
import { createAdminClient } from '../sdk/typescript/src/index.js';
import { silentLogger } from '../src/logger.js';
import { makeDerivation, type MadeDerivation } from '../src/store/make-derivation.js';
import { startTracing } from '../src/telemetry/tracing.js';
import { SimulatedAgent } from '../test/helpers/simulated-agent.js';

const SYSTEM = 'x86_64-linux';

export interface TracingRound {
  tracing: boolean;
  builds: number;
  seconds: number;
  buildsPerSecond: number;
  /** OTLP export requests the receiver got (0 with tracing off). */
  exports: number;
}

export interface BenchTracingReport {
  rounds: TracingRound[];
  off: number;
  on: number;
  /** How much slower with tracing on, in percent of the throughput with it off. */
  overheadPercent: number;
}

/** An OTLP/HTTP receiver that takes every export and counts requests and bytes. */
async function startReceiver(): Promise<{ url: string; requests: () => number; stop(): Promise<void> }> {
  let requests = 0;
  const server = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => requests,
    stop: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

function derivations(count: number, run: string): MadeDerivation[] {
  return Array.from({ length: count }, (_, i) =>
    makeDerivation({ name: `bench-tracing-${i}-${run}`, system: SYSTEM, builder: '/bin/sh' }, '/nix/store', new Map()),
  );
}

async function round(tracing: boolean, builds: number, agents: number, slots: number, receiverUrl: string): Promise<TracingRound> {
  // The SDK reads its settings from the process's environment.
  Object.assign(process.env, { OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl, OTEL_BSP_MAX_QUEUE_SIZE: '65536', OTEL_BSP_SCHEDULE_DELAY: '500' });
  const traced = tracing ? startTracing('kiln-bench') : undefined;
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (tracing && !traced?.enabled) throw new Error('tracing did not start');
  const dataDir = mkdtempSync(join(tmpdir(), 'kiln-bench-tracing-'));
  const coordinator = await startCoordinator({ port: 0, dataDir, database: { memory: true }, log: silentLogger(), submitMissingInputs: false });
  const sims: SimulatedAgent[] = [];
  try {
    const admin = createAdminClient(coordinator.url, coordinator.adminToken);
    const made = derivations(builds, `${tracing ? 'on' : 'off'}-${Date.now()}`);
    // Everything is queued before the first agent connects: the round measures assignment.
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = w; i < made.length; i += 8) {
          await admin.submitBuild({ derivationPath: made[i]!.path, derivations: [{ path: made[i]!.path, text: Buffer.from(made[i]!.text) }] });
        }
      }),
    );
    let finished = 0;
    let allDone!: () => void;
    const done = new Promise<void>((r) => (allDone = r));
    const onFinished = () => {
      if (++finished === builds) allDone();
    };
    const started = performance.now();
    for (let a = 0; a < agents; a++) {
      const { agent } = await admin.createAgent({ name: `bench-${a}` });
      const { password } = await admin.createAgentPassword({ agentId: agent!.id });
      const sim = new SimulatedAgent({ url: coordinator.url, agentId: agent!.id, password, systems: [SYSTEM], slots, onFinished });
      await sim.start();
      sims.push(sim);
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`only ${finished} of ${builds} builds finished`)), 600_000)))]).finally(() =>
      clearTimeout(timer),
    );
    const seconds = (performance.now() - started) / 1000;
    return { tracing, builds, seconds, buildsPerSecond: builds / seconds, exports: 0 };
  } finally {
    await Promise.all(sims.map((s) => s.stop()));
    await coordinator.stop();
    // Flushes what is left: the export's cost is part of the round's.
    await traced?.shutdown();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function benchTracing(opts: { builds?: number; rounds?: number; agents?: number; slots?: number } = {}): Promise<BenchTracingReport> {
  const builds = opts.builds ?? 600;
  const receiver = await startReceiver();
  const rounds: TracingRound[] = [];
  try {
    // A warm-up round (JIT, the first PGlite) that does not count.
    await round(false, Math.min(100, builds), opts.agents ?? 4, opts.slots ?? 8, receiver.url);
    for (let r = 0; r < (opts.rounds ?? 3); r++) {
      for (const tracing of [false, true]) {
        const before = receiver.requests();
        const result = await round(tracing, builds, opts.agents ?? 4, opts.slots ?? 8, receiver.url);
        result.exports = receiver.requests() - before;
        rounds.push(result);
        console.log(`tracing ${tracing ? 'on ' : 'off'}: ${builds} builds in ${result.seconds.toFixed(2)} s, ${result.buildsPerSecond.toFixed(0)} builds/s${tracing ? `, ${result.exports} OTLP exports` : ''}`);
      }
    }
  } finally {
    await receiver.stop();
  }
  const best = (on: boolean) => Math.max(...rounds.filter((r) => r.tracing === on).map((r) => r.buildsPerSecond));
  const off = best(false);
  const on = best(true);
  return { rounds, off, on, overheadPercent: (100 * (off - on)) / off };
}
