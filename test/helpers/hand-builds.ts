// Builds carried out by hand through a test agent, for tests of what the cache does with
// outputs: a made derivation is submitted, its assignment taken, each output uploaded as
// a small file that declares the references asked for, and the build reported
// succeeded; then the publish hook's delivery for it is awaited.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildResult } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { uploadOutput } from '../../src/agent/uploader.js';
import type { DeliveryOutcome } from '../../src/hooks/runner.js';
import { silentLogger } from '../../src/logger.js';
import type { Derivation } from '../../src/store/derivation.js';
import { makeDerivation, type DerivationSpec, type MadeDerivation } from '../../src/store/make-derivation.js';
import type { TestAgentStream } from './agent-stream.js';
import type { TestCoordinator } from './coordinator.js';
import { waitForBuilds } from './wait.js';

export const SYSTEM = 'x86_64-linux';

/** Derivations made in memory, each able to name the ones made before as inputs. */
export class DerivationMaker {
  private readonly known = new Map<string, Derivation>();
  private readonly made = new Map<string, MadeDerivation>();

  make(spec: Omit<DerivationSpec, 'system' | 'builder'> & { system?: string }): MadeDerivation {
    const d = makeDerivation({ system: SYSTEM, builder: '/bin/sh', ...spec }, '/nix/store', this.known);
    this.known.set(d.path, d.drv);
    this.made.set(d.path, d);
    return d;
  }

  /** What a submission of `d` carries: its text and its inputs', recursively. */
  closure(d: MadeDerivation): { path: string; text: Buffer }[] {
    const out = new Map<string, Buffer>();
    const visit = (m: MadeDerivation) => {
      if (out.has(m.path)) return;
      out.set(m.path, Buffer.from(m.text));
      for (const input of m.drv.inputDrvs.keys()) visit(this.made.get(input)!);
    };
    visit(d);
    return [...out].map(([path, text]) => ({ path, text }));
  }
}

/** Every hook delivery from now on, and a way to wait for one (seen already or to come). */
export function watchDeliveries(t: TestCoordinator): { until(match: (d: DeliveryOutcome) => boolean, timeoutMs?: number): Promise<DeliveryOutcome>; stop(): void } {
  const seen: DeliveryOutcome[] = [];
  const waiters = new Set<(d: DeliveryOutcome) => void>();
  const stop = t.coordinator.hooks.onDelivery((d) => {
    seen.push(d);
    for (const w of waiters) w(d);
  });
  return {
    stop,
    until(match, timeoutMs = 30_000) {
      const found = seen.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching hook delivery within ${timeoutMs} ms (seen: ${JSON.stringify(seen.slice(-5))})`));
        }, timeoutMs);
        const waiter = (d: DeliveryOutcome) => {
          if (!match(d)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(d);
        };
        waiters.add(waiter);
      });
    },
  };
}

export interface HandBuilt {
  buildId: string;
  /** Output name → store path. */
  outputs: Map<string, string>;
}

/**
 * Submits `d` (which must be ready: its inputs in the cache), builds it on `agent` with
 * each output declaring `references(outputName)`, and waits until the publish hook has
 * handled its success: on `t`, or on any of `publishers` (replicas on one database, whose
 * hook runners all claim deliveries).
 */
export async function buildByHand(
  t: TestCoordinator,
  agent: TestAgentStream,
  maker: DerivationMaker,
  d: MadeDerivation,
  opts: { references?: (output: string) => string[]; publishers?: TestCoordinator[] } = {},
): Promise<HandBuilt> {
  const watched = (opts.publishers ?? [t]).map((c) => watchDeliveries(c));
  const deliveries = {
    until: (match: (d: DeliveryOutcome) => boolean) =>
      Promise.any(watched.map((w) => w.until(match))).catch((err: AggregateError) => {
        throw err.errors[0];
      }),
    stop: () => watched.forEach((w) => w.stop()),
  };
  try {
    const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: maker.closure(d) });
    const assign = await agent.nextAssignment();
    if (assign.buildId !== build!.id) throw new Error(`the agent was given build ${assign.buildId}, not ${build!.id} (${d.path})`);
    const dir = mkdtempSync(join(tmpdir(), 'kiln-hand-'));
    const client = agentClient(t.coordinator.url, agent.agentId, agent.password);
    const outputs = [];
    for (const o of assign.outputs) {
      const diskPath = join(dir, o.name);
      // Content unique to the path, so that no two outputs share a NAR file.
      writeFileSync(diskPath, `${o.path} ${randomUUID()}\n`);
      outputs.push(await uploadOutput({ client, signal: new AbortController().signal, log: silentLogger() }, build!.id, { name: o.name, storePath: o.path, diskPath, references: opts.references?.(o.name) ?? [] }));
    }
    agent.send({ case: 'buildFinished', value: { buildId: build!.id, result: BuildResult.SUCCESS, outputs, message: '' } });
    const event = await waitForEvent(t, build!.id, 'build-success');
    const published = await deliveries.until((x) => x.hook === 'publish' && x.eventId === event && x.outcome !== 'interrupted');
    if (published.outcome !== 'done') throw new Error(`publishing build ${build!.id} failed: ${published.error}`);
    return { buildId: build!.id, outputs: d.outputs };
  } finally {
    deliveries.stop();
  }
}

/** The id of the build's event of that type; it is written with the state change, so the state is what is awaited. */
async function waitForEvent(t: TestCoordinator, buildId: string, type: 'build-success'): Promise<number> {
  const state = async () => (await t.admin.getBuild({ id: buildId })).build!.state;
  await waitForBuilds(t.coordinator, async () => (await state()) === BuildState.SUCCEEDED, 20_000, async () => `build ${buildId} is ${BuildState[await state()]}`);
  const { events } = await t.admin.listEvents({ buildId, types: [type] });
  return Number(events[0]!.id);
}
