// The cache port under agents' gRPC traffic: simulated agents (the real AgentService
// protocol over HTTP/2, see simulated-agent.ts) build a queue of small derivations on
// the coordinator while wrk asks the same port for narinfos, so that what the agents'
// streams cost the cache is measured, not guessed. Builds finished during wrk's run
// are counted: an agent farm that had run dry would be no load at all.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createAdminClient } from '../sdk/typescript/src/index.js';
import { makeDerivation } from '../src/store/make-derivation.js';
import { readCpuSeconds } from './proc-stats.js';
import { SimulatedAgent } from '../test/helpers/simulated-agent.js';

const SYSTEM = 'x86_64-linux';

export interface AgentLoad {
  agents: number;
  slots: number;
  /** Builds the agents finished while the measured run went on, and per second. */
  builds: number;
  buildsPerSecond: number;
  /** Builds queued and not finished at the end: above 0, the agents never ran dry. */
  left: number;
  /** The coordinator's CPU seconds per second over the run (1 = one core). */
  coordinatorCores: number;
}

export interface AgentLoadOptions {
  url: string;
  dataDir: string;
  coordinatorPid: number;
  agents?: number;
  slots?: number;
  /** Builds queued before the agents connect: more than they can build in the run. */
  builds?: number;
}

/** Runs `measure` while simulated agents build on the coordinator; its result and the load beside it. */
export async function underAgentLoad<T>(opts: AgentLoadOptions, measure: () => Promise<T>): Promise<{ result: T; load: AgentLoad }> {
  const agents = opts.agents ?? 4;
  const slots = opts.slots ?? 8;
  const queued = opts.builds ?? 5_000;
  const admin = createAdminClient(opts.url, readFileSync(join(opts.dataDir, 'admin-token'), 'utf8').trim());
  const run = `serve-${Date.now()}`;
  for (let start = 0; start < queued; start += 1_000) {
    const batch = Array.from({ length: Math.min(1_000, queued - start) }, (_, k) => {
      const d = makeDerivation({ name: `bench-serve-${start + k}-${run}`, system: SYSTEM, builder: '/bin/sh' }, '/nix/store', new Map());
      return { derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }] };
    });
    await admin.submitBuilds({ builds: batch });
  }
  let finished = 0;
  let firstDone!: () => void;
  const flowing = new Promise<void>((r) => (firstDone = r));
  const sims: SimulatedAgent[] = [];
  try {
    for (let a = 0; a < agents; a++) {
      const { agent } = await admin.createAgent({ name: `bench-serve-${a}` });
      const { password } = await admin.createAgentPassword({ agentId: agent!.id });
      const sim = new SimulatedAgent({
        url: opts.url, agentId: agent!.id, password, systems: [SYSTEM], slots,
        onFinished: () => {
          if (++finished === 1) firstDone();
        },
      });
      await sim.start();
      sims.push(sim);
    }
    // Measure once builds are flowing, not while the agents log in.
    await flowing;
    const before = finished;
    const cpuBefore = readCpuSeconds(opts.coordinatorPid);
    const started = performance.now();
    const result = await measure();
    const seconds = (performance.now() - started) / 1000;
    const builds = finished - before;
    return {
      result,
      load: {
        agents, slots, builds, buildsPerSecond: builds / seconds, left: queued - finished,
        coordinatorCores: (readCpuSeconds(opts.coordinatorPid) - cpuBefore) / seconds,
      },
    };
  } finally {
    await Promise.all(sims.map((s) => s.stop()));
  }
}
