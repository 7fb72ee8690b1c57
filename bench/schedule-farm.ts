// One run of the scheduling benchmark: simulated agents (the real AgentService protocol
// over real HTTP/2 streams, see simulated-agent.ts) spread over the coordinator
// processes build the whole queued graph, and every assignment is timed.
//
// When a build is ready: kiln makes a build ready when the last output it waits for
// is stored (the upload call releases the waiters before it returns), so a build's
// ready time is the moment the agent saw the last of those uploads return, or the
// farm's start for builds with no inputs. A ready build may still wait for a free slot:
// with a queue far larger than the farm, most do, and that wait is capacity, not the
// scheduler. So two figures: the scheduling latency, from the moment a ready build and
// a free slot of the agent that got it both existed (a slot is free from the
// acknowledgement of the agent's previous build, or from its welcome) to the
// assignment; and the queue latency, from ready to assigned whatever the slots. Both over
// the builds assigned in the steady part, as the rate (the start, with every agent's
// password checked while the first builds run, and the graph's narrow tail are apart).
import { readCpuSeconds, readMachineCpuSeconds, readTreeCpuSeconds } from './proc-stats.js';
import type { DagNode } from './schedule-dag.js';
import type { AgentCredentials } from './schedule-queue.js';
import { SimulatedAgent } from '../test/helpers/simulated-agent.js';
import { DAG_SYSTEMS } from './schedule-dag.js';

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface FarmRun {
  replicas: number;
  agents: number;
  builds: number;
  /** Connecting every agent (each authenticates once: an scrypt check). */
  connectSeconds: number;
  /** From the first assignment to the last acknowledgement. */
  seconds: number;
  /** Assignments per second between the 10th and the 90th percentile of assignments (and after every agent connected). */
  sustainedPerSecond: number;
  /** Milliseconds, of the builds assigned in the steady part (as the rate). */
  schedulingLatency: Percentiles;
  queueLatency: Percentiles;
  /** The same over every build, the start (agents connecting, scrypt checks) and the tail included. */
  schedulingLatencyAll: Percentiles;
  /** Assignments the agent saw before it saw the build's last input stored (counted as 0 ms). */
  assignedBeforeSeenReady: number;
  /** CPU seconds over the run. */
  cpu: { coordinators: number; postgres: number | undefined; bench: number; machineBusy: number; machineCapacity: number };
  loadAverage: number[];
}

export interface FarmOptions {
  urls: string[];
  coordinatorPids: number[];
  postgresPid?: number;
  agents: AgentCredentials[];
  slots: number;
  nodes: DagNode[];
  ids: string[];
  log: (line: string) => void;
  /** How long without any progress before the run is declared stuck. */
  stallMs?: number;
}

export async function runFarm(opts: FarmOptions): Promise<FarmRun> {
  const { nodes, ids } = opts;
  const n = nodes.length;
  const indexOf = new Map(ids.map((id, i) => [id, i]));
  const assignedAt = new Float64Array(n).fill(NaN);
  const slotFreeAt = new Float64Array(n).fill(NaN);
  const storedAt: Map<string, number>[] = Array.from({ length: n }, () => new Map());
  let assigned = 0;
  let acknowledged = 0;
  let lastProgress = performance.now();
  let allDone!: () => void;
  let failed!: (err: unknown) => void;
  const done = new Promise<void>((resolve, reject) => {
    allDone = resolve;
    failed = reject;
  });

  const cpu0 = cpuSnapshot(opts);
  const started = performance.now();
  const agents = opts.agents.map((credentials, k) => {
    // The times at which this agent's slots became free, oldest first: all of them at
    // its welcome, then one at each acknowledgement.
    const freeSlots: number[] = [];
    let unusedAtWelcome = opts.slots;
    const agent: SimulatedAgent = new SimulatedAgent({
      url: opts.urls[k % opts.urls.length]!,
      ...credentials,
      systems: [...DAG_SYSTEMS],
      slots: opts.slots,
      onAssigned(assign, at) {
        const i = indexOf.get(assign.buildId);
        if (i === undefined) throw new Error(`assigned build ${assign.buildId} is not one of the benchmark's`);
        if (!Number.isNaN(assignedAt[i]!)) throw new Error(`build ${assign.buildId} was assigned twice`);
        assignedAt[i] = at;
        if (unusedAtWelcome > 0) {
          unusedAtWelcome--;
          slotFreeAt[i] = agent.welcomedAt;
        } else {
          slotFreeAt[i] = freeSlots.shift()!;
        }
        assigned++;
        lastProgress = at;
      },
      onStored(buildId, outputName, at) {
        storedAt[indexOf.get(buildId)!]!.set(outputName, at);
      },
      onError(err, buildId) {
        const what = buildId ? `build ${buildId} failed on its agent` : `agent ${credentials.agentId} lost its stream`;
        failed(new Error(`${what}: ${(err as Error).message}`, { cause: err }));
      },
      onFinished(_buildId, at) {
        freeSlots.push(at);
        lastProgress = at;
        if (++acknowledged === n) allDone();
      },
    });
    return agent;
  });

  let stalled: NodeJS.Timeout | undefined;
  const ticker = setInterval(() => {
    const seconds = (performance.now() - started) / 1000;
    opts.log(`  ${seconds.toFixed(0)} s: ${assigned} assigned, ${acknowledged} finished`);
  }, 5_000);
  try {
    // Connect in small waves: each agent's first call is an scrypt check on its coordinator.
    let nextAgent = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let k = nextAgent++; k < agents.length; k = nextAgent++) {
          await agents[k]!.start();
        }
      }),
    );
    const connected = performance.now();
    const stallMs = opts.stallMs ?? 60_000;
    await Promise.race([
      done,
      new Promise<never>((_, reject) => {
        stalled = setInterval(() => {
          if (performance.now() - lastProgress > stallMs) {
            reject(new Error(`no progress for ${stallMs / 1000} s: ${assigned} of ${n} builds assigned, ${acknowledged} finished`));
          }
        }, 1_000);
      }),
    ]);
    const cpu1 = cpuSnapshot(opts);
    const loadAverage = (await import('node:os')).loadavg();

    const times = Float64Array.from(assignedAt).sort();
    const first = times[0]!;
    const lastAck = lastProgress;
    const from = Math.max(times[Math.floor(n * 0.1)]!, connected);
    const to = times[Math.floor(n * 0.9)]!;
    const inWindow = countBetween(times, from, to);

    const farmStart = first;
    const scheduling: number[] = [];
    const schedulingAll: number[] = [];
    const queue: number[] = [];
    let early = 0;
    nodes.forEach((node, i) => {
      let ready = farmStart;
      for (const input of node.inputs) {
        for (const output of input.outputs) ready = Math.max(ready, storedAt[input.index]!.get(output) ?? Infinity);
      }
      const at = assignedAt[i]!;
      if (at < ready) early++;
      const latency = Math.max(0, at - Math.max(ready, slotFreeAt[i]!));
      schedulingAll.push(latency);
      if (at < from || at > to) return;
      queue.push(Math.max(0, at - ready));
      scheduling.push(latency);
    });
    return {
      replicas: opts.urls.length,
      agents: agents.length,
      builds: n,
      connectSeconds: (connected - started) / 1000,
      seconds: (lastAck - first) / 1000,
      sustainedPerSecond: inWindow / ((to - from) / 1000),
      schedulingLatency: percentiles(scheduling),
      queueLatency: percentiles(queue),
      schedulingLatencyAll: percentiles(schedulingAll),
      assignedBeforeSeenReady: early,
      cpu: {
        coordinators: cpu1.coordinators - cpu0.coordinators,
        postgres: cpu1.postgres === undefined ? undefined : cpu1.postgres - cpu0.postgres!,
        bench: cpu1.bench - cpu0.bench,
        machineBusy: cpu1.machine.busy - cpu0.machine.busy,
        machineCapacity: cpu1.machine.total - cpu0.machine.total,
      },
      loadAverage,
    };
  } finally {
    clearInterval(ticker);
    clearInterval(stalled);
    await Promise.all(agents.map((a) => a.stop()));
  }
}

function cpuSnapshot(opts: FarmOptions) {
  const usage = process.cpuUsage();
  return {
    coordinators: opts.coordinatorPids.reduce((sum, pid) => sum + readCpuSeconds(pid), 0),
    postgres: opts.postgresPid === undefined ? undefined : readTreeCpuSeconds(opts.postgresPid),
    bench: (usage.user + usage.system) / 1e6,
    machine: readMachineCpuSeconds(),
  };
}

/** How many of the sorted `times` fall in [from, to]. */
function countBetween(times: Float64Array, from: number, to: number): number {
  let count = 0;
  for (const t of times) if (t >= from && t <= to) count++;
  return count;
}

export function percentiles(values: number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] ?? NaN };
}
