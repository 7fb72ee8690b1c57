// Filling a coordinator for the scheduling benchmark through its AdminService, as an
// operator's tools would: agents with passwords, then the graph, inputs first (each
// request carries only its own .drvs; their inputs are stored by then): the first
// builds one SubmitBuild each, several in flight, the rest in SubmitBuilds batches.
import type { AdminClient } from '../src/client/admin-client.js';
import type { DagNode } from './schedule-dag.js';

export interface AgentCredentials {
  agentId: string;
  password: string;
}

export async function createAgents(admin: AdminClient, count: number, concurrency = 4): Promise<AgentCredentials[]> {
  const agents: AgentCredentials[] = new Array<AgentCredentials>(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < count; i = next++) {
        const { agent } = await admin.createAgent({ name: `bench-agent-${i}` });
        const { password } = await admin.createAgentPassword({ agentId: agent!.id });
        agents[i] = { agentId: agent!.id, password };
      }
    }),
  );
  return agents;
}

export interface Rate {
  builds: number;
  seconds: number;
  perSecond: number;
}

export interface Submission {
  /** Build id of each node, by index. */
  ids: string[];
  /** The first builds, one SubmitBuild each. */
  single: Rate;
  /** The rest, in SubmitBuilds batches. */
  batched: Rate;
}

export interface SubmitOptions {
  /** How many nodes go one by one (default 2,000). */
  singles: number;
  /** SubmitBuild requests in flight. */
  concurrency: number;
  /** Builds per SubmitBuilds call. */
  batch: number;
  progress?: (done: number, perSecond: number) => void;
}

export async function submitDag(admin: AdminClient, nodes: DagNode[], opts: SubmitOptions): Promise<Submission> {
  const ids = new Array<string>(nodes.length);
  const singles = Math.min(opts.singles, nodes.length);
  const request = (i: number) => {
    const node = nodes[i]!;
    return { derivationPath: node.path, derivations: [{ path: node.path, text: Buffer.from(node.text) }], priority: node.priority };
  };
  let done = 0;
  let phaseStart = performance.now();
  let phaseDone = 0;
  const ticker = setInterval(() => opts.progress?.(done, (done - phaseDone) / ((performance.now() - phaseStart) / 1000)), 5_000);
  try {
    // One by one, each once its inputs' submissions returned, several in flight.
    const submitted: Promise<void>[] = new Array<Promise<void>>(singles);
    let next = 0;
    await Promise.all(
      Array.from({ length: opts.concurrency }, async () => {
        for (let i = next++; i < singles; i = next++) {
          const own = (async () => {
            await Promise.all(nodes[i]!.inputs.map((input) => submitted[input.index]));
            const { build } = await admin.submitBuild(request(i));
            ids[i] = build!.id;
            done++;
          })();
          submitted[i] = own;
          await own;
        }
      }),
    );
    const single = rate(singles, phaseStart);
    phaseStart = performance.now();
    phaseDone = done;
    // Batches in order: a batch's inputs are in earlier batches or in itself.
    for (let start = singles; start < nodes.length; start += opts.batch) {
      const indices = Array.from({ length: Math.min(opts.batch, nodes.length - start) }, (_, k) => start + k);
      const { builds } = await admin.submitBuilds({ builds: indices.map(request) });
      builds.forEach((b, k) => (ids[indices[k]!] = b.build!.id));
      done += indices.length;
    }
    return { ids, single, batched: rate(nodes.length - singles, phaseStart) };
  } finally {
    clearInterval(ticker);
  }
}

function rate(builds: number, since: number): Rate {
  const seconds = (performance.now() - since) / 1000;
  return { builds, seconds, perSecond: builds / seconds };
}
