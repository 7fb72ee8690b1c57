// The scheduler's invariants as properties over random DAGs, priorities, tags and agent
// sets, on a real database (PGlite and PostgreSQL): builds are submitted, claimed by the
// allocation policy, finished and re-prioritised in random order, and after every step
// nothing is allocated before its inputs, no agent exceeds its slots or gets a build
// whose system, tags or required system features it lacks (or that lacks one of the
// agent's mandatory features), the highest derived priority goes first (also when
// agents alike claim together in one statement), and the
// incrementally kept derived priorities and waiting counts equal a from-scratch model.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { sql } from 'drizzle-orm';
import { openDatabase, type DatabaseHandle } from '../../src/db/connection.js';
import { rowsOf } from '../../src/db/rows.js';
import { agents, storePaths } from '../../src/db/schema.js';
import { priorityFirst, type AllocationPolicy } from '../../src/scheduler/allocation.js';
import { featuresMatch, validateAgentFeatures } from '../../src/scheduler/placement.js';
import { releasePaths } from '../../src/scheduler/availability.js';
import { setBuildPriority } from '../../src/scheduler/build-changes.js';
import { recordFinished } from '../../src/scheduler/build-reports.js';
import { fairShareByTag } from '../../src/scheduler/fair-share.js';
import { DEFAULT_RETRY_POLICY } from '../../src/scheduler/retry-policy.js';
import { submitBuild } from '../../src/scheduler/submission.js';
import { NarStorage } from '../../src/storage/nar-storage.js';
import { restoreDerivationNars } from '../../src/substitutes/derivation-nar.js';
import { makeDerivation, type MadeDerivation } from '../../src/store/make-derivation.js';
import { parseStorePath } from '../../src/store/store-path.js';
import type { Derivation } from '../../src/store/derivation.js';
import { createTestDatabase, DATABASE_KINDS, type TestDatabase } from '../helpers/databases.js';

const REPORTS = { retry: DEFAULT_RETRY_POLICY, leaseMs: 60_000 };
const TAG_VALUES = ['a', 'b'];
const FEATURES = ['kvm', 'big-parallel'];
const ZERO_HASH = 'sha256:0000000000000000000000000000000000000000000000000000';

interface NodeSpec {
  inputs: number[];
  system: number;
  tag: string | null;
  priority: number;
  twoOutputs: boolean;
  features: string[];
}

interface AgentSpec {
  systems: number[];
  tag: string | null;
  slots: number;
  supported: string[];
  mandatory: string[];
}

type Action =
  | { kind: 'claim'; agent: number }
  | { kind: 'claimGroup'; agent: number }
  | { kind: 'finish'; pick: number }
  | { kind: 'priority'; pick: number; priority: number };

const dagArb = fc.integer({ min: 2, max: 14 }).chain((n) =>
  fc.array(
    fc.record({
      inputs: fc.uniqueArray(fc.nat({ max: 40 }), { maxLength: 3 }),
      system: fc.nat({ max: 1 }),
      tag: fc.constantFrom(null, ...TAG_VALUES),
      priority: fc.integer({ min: -3, max: 3 }),
      twoOutputs: fc.boolean(),
      features: fc.oneof({ weight: 2, arbitrary: fc.constant<string[]>([]) }, { weight: 1, arbitrary: fc.subarray(FEATURES, { minLength: 1 }) }),
    }),
    { minLength: n, maxLength: n },
  ),
);
const agentsArb = fc.array(
  fc.record({
    systems: fc.uniqueArray(fc.nat({ max: 1 }), { minLength: 1, maxLength: 2 }),
    tag: fc.constantFrom(null, ...TAG_VALUES),
    slots: fc.integer({ min: 1, max: 3 }),
    supported: fc.subarray(FEATURES),
    mandatory: fc.oneof({ weight: 3, arbitrary: fc.constant<string[]>([]) }, { weight: 1, arbitrary: fc.subarray(FEATURES, { minLength: 1, maxLength: 1 }) }),
  }),
  { minLength: 1, maxLength: 3 },
);
const actionsArb = fc.array(
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('claim' as const), agent: fc.nat({ max: 2 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('claimGroup' as const), agent: fc.nat({ max: 2 }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('finish' as const), pick: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('priority' as const), pick: fc.nat(), priority: fc.integer({ min: -3, max: 6 }) }) },
  ),
  { minLength: 10, maxLength: 60 },
);

interface BuildRow {
  id: string;
  derivation_path: string;
  state: string;
  priority: number;
  derived_priority: number;
  waiting: number;
  agent_id: string | null;
  system: string;
  required_features: string[];
}

describe.each(DATABASE_KINDS)('scheduler invariants on %s', (kind) => {
  let tdb: TestDatabase;
  let handle: DatabaseHandle;
  let storage: NarStorage;
  let narDir: string;

  beforeAll(async () => {
    tdb = await createTestDatabase(kind);
    handle = await openDatabase(tdb.options);
    narDir = mkdtempSync(join(tmpdir(), 'kiln-props-'));
    storage = await NarStorage.open(narDir);
  });
  afterAll(async () => {
    await handle?.close();
    await tdb?.drop();
    if (narDir) rmSync(narDir, { recursive: true, force: true });
  });

  for (const policyName of ['priority-first', 'fair-share'] as const) {
    test(`random DAGs and agents keep every invariant (${policyName})`, async () => {
      await fc.assert(
        fc.asyncProperty(dagArb, agentsArb, actionsArb, fc.nat(), async (nodes, agentSpecs, actions, order) => {
          await runScenario(handle, storage, policyName === 'fair-share' ? fairShareByTag('t') : priorityFirst, nodes, agentSpecs, actions, order);
        }),
        { numRuns: kind === 'pglite' ? 12 : 8 },
      );
    }, 240_000);
  }
});

async function runScenario(
  handle: DatabaseHandle,
  storage: NarStorage,
  policy: AllocationPolicy,
  nodes: NodeSpec[],
  agentSpecs: AgentSpec[],
  actions: Action[],
  order: number,
): Promise<void> {
  const { db } = handle;
  // Systems unique to this run keep earlier runs' builds out of its claims.
  const run = randomUUID().slice(0, 8);
  const systems = [`x86_64-linux-${run}`, `aarch64-linux-${run}`];

  // The DAG: node i's inputs are earlier nodes.
  const known = new Map<string, Derivation>();
  const made: MadeDerivation[] = [];
  nodes.forEach((n, i) => {
    const inputs = [...new Set(n.inputs.filter((j) => j < i).map((j) => j % Math.max(1, i)))].filter((j) => j < i);
    const d = makeDerivation(
      {
        name: `n${i}-${run}`,
        system: systems[n.system]!,
        builder: '/bin/sh',
        outputs: n.twoOutputs ? ['out', 'dev'] : ['out'],
        env: n.features.length > 0 ? { requiredSystemFeatures: n.features.join(' ') } : undefined,
        inputDrvs: new Map(inputs.map((j) => [made[j]!.path, nodes[j]!.twoOutputs && j % 2 === 0 ? ['dev'] : ['out']])),
      },
      '/nix/store',
      known,
    );
    known.set(d.path, d.drv);
    made.push(d);
  });
  const byPath = new Map(made.map((m) => [m.path, m]));
  // Outputs of input derivations that a derivation uses.
  const inputPaths = (d: MadeDerivation): string[] =>
    [...d.drv.inputDrvs].flatMap(([drvPath, outs]) => outs.map((o) => byPath.get(drvPath)!.outputs.get(o)!));
  const closure = (i: number): MadeDerivation[] => {
    const seen = new Set<string>();
    const out: MadeDerivation[] = [];
    const visit = (d: MadeDerivation) => {
      if (seen.has(d.path)) return;
      seen.add(d.path);
      out.push(d);
      for (const p of d.drv.inputDrvs.keys()) visit(byPath.get(p)!);
    };
    visit(made[i]!);
    return out;
  };

  // Agents, each with a twin alike in systems, tags and slots, for group claims.
  const agentList = [];
  for (const spec of agentSpecs) {
    const [id, twin] = [randomUUID(), randomUUID()];
    await db.insert(agents).values([{ id, name: `prop-${run}` }, { id: twin, name: `prop-${run}-twin` }]);
    agentList.push({
      agentId: id,
      twin,
      systems: spec.systems.map((s) => systems[s]!),
      tags: spec.tag ? [{ key: 't', value: spec.tag }] : [],
      slots: spec.slots,
      features: validateAgentFeatures({ supported: spec.supported, mandatory: spec.mandatory }, 'agent'),
    });
  }

  // Submit every node, in an order rotated by `order` (inputs may come after their users).
  const buildOf = new Map<string, number>();
  const indices = nodes.map((_, i) => i);
  const rotated = [...indices.slice(order % nodes.length), ...indices.slice(0, order % nodes.length)];
  for (const i of rotated) {
    const { build } = await submitBuild(db, (tx, roots) => restoreDerivationNars(tx, storage, roots), {
      derivationPath: made[i]!.path,
      derivations: closure(i).map((d) => ({ path: d.path, text: Buffer.from(d.text) })),
      priority: nodes[i]!.priority,
      tags: nodes[i]!.tag ? [{ key: 't', value: nodes[i]!.tag! }] : [],
      ignoreIfOutputExists: false,
    });
    buildOf.set(build!.id, i);
  }
  await checkModel();

  for (const action of actions) {
    if (action.kind === 'claim') {
      const agent = agentList[action.agent % agentList.length]!;
      const before = await buildsOfRun();
      const held = before.filter((b) => b.agent_id === agent.agentId && (b.state === 'allocated' || b.state === 'started')).length;
      const eligible = before.filter((b) => b.state === 'scheduled' && b.waiting === 0 && agent.systems.includes(b.system) && tagsFit(b, agent) && featuresMatch(b.required_features, agent.features));
      const claimed = await policy.claim(db, agent, agent.slots - held, { leaseMs: 60_000 });
      const ids = new Set(claimed.map((c) => c.id));
      // No agent exceeds its slots; only eligible builds are claimed.
      expect(held + claimed.length).toBeLessThanOrEqual(agent.slots);
      for (const c of claimed) expect(eligible.map((e) => e.id)).toContain(c.id);
      // It takes as many as it can.
      expect(claimed.length).toBe(Math.min(agent.slots - held, eligible.length));
      // Nothing before its inputs: every input path is in the cache.
      for (const c of claimed) {
        const inputs = inputPaths(made[buildOf.get(c.id)!]!);
        const stored = await storedPaths(inputs);
        expect(stored.size).toBe(inputs.length);
      }
      // Priority-first: nothing left eligible outranks what was taken.
      if (policy === priorityFirst && claimed.length > 0) {
        const lowestTaken = Math.min(...eligible.filter((e) => ids.has(e.id)).map((e) => e.derived_priority));
        for (const e of eligible) if (!ids.has(e.id)) expect(e.derived_priority).toBeLessThanOrEqual(lowestTaken);
      }
    } else if (action.kind === 'claimGroup') {
      if (!policy.claimForGroup) continue;
      const agent = agentList[action.agent % agentList.length]!;
      const before = await buildsOfRun();
      const members = [agent.agentId, agent.twin].map((agentId) => ({
        agentId,
        limit: agent.slots - before.filter((b) => b.agent_id === agentId && (b.state === 'allocated' || b.state === 'started')).length,
      }));
      const eligible = before.filter((b) => b.state === 'scheduled' && b.waiting === 0 && agent.systems.includes(b.system) && tagsFit(b, agent) && featuresMatch(b.required_features, agent.features));
      const result = await policy.claimForGroup(db, { systems: agent.systems, tags: agent.tags, features: agent.features, agents: members }, { leaseMs: 60_000 });
      // No exclusions here, so the group is never sent back to claim alone.
      expect(result).toBeDefined();
      const claimed = [...result!.values()].flat();
      const ids = new Set(claimed.map((c) => c.id));
      // No member exceeds its slots; together they take as many as they can, only eligible builds, each once.
      for (const m of members) expect(result!.get(m.agentId)?.length ?? 0).toBeLessThanOrEqual(m.limit);
      expect(ids.size).toBe(claimed.length);
      expect(claimed.length).toBe(Math.min(members.reduce((n, m) => n + m.limit, 0), eligible.length));
      for (const c of claimed) expect(eligible.map((e) => e.id)).toContain(c.id);
      for (const c of claimed) {
        const inputs = inputPaths(made[buildOf.get(c.id)!]!);
        expect((await storedPaths(inputs)).size).toBe(inputs.length);
      }
      // The rows say who got what.
      const after = await buildsOfRun();
      for (const [agentId, builds] of result!) for (const c of builds) expect(after.find((b) => b.id === c.id)?.agent_id).toBe(agentId);
      // Nothing left eligible outranks anything either member took.
      if (claimed.length > 0) {
        const lowestTaken = Math.min(...eligible.filter((e) => ids.has(e.id)).map((e) => e.derived_priority));
        for (const e of eligible) if (!ids.has(e.id)) expect(e.derived_priority).toBeLessThanOrEqual(lowestTaken);
      }
    } else if (action.kind === 'finish') {
      const running = (await buildsOfRun()).filter((b) => b.state === 'allocated');
      if (running.length === 0) continue;
      const b = running[action.pick % running.length]!;
      const outputs = [...made[buildOf.get(b.id)!]!.outputs.values()];
      await db
        .insert(storePaths)
        .values(
          outputs.map((path) => ({
            path,
            hashPart: parseStorePath(path).hashPart,
            narHash: ZERO_HASH,
            narSize: 0,
            fileName: `${parseStorePath(path).hashPart}.nar.lz4`,
            compression: 'lz4',
            fileHash: 'sha256:0000000000000000000000000000000000000000000000000000',
            fileSize: 0,
            buildId: b.id,
          })),
        )
        .onConflictDoNothing();
      await releasePaths(db, outputs);
      const reported = [...made[buildOf.get(b.id)!]!.outputs].map(([name, path]) => ({ name, path, narHash: ZERO_HASH, narSize: 0 }));
      await recordFinished(db, REPORTS, b.agent_id!, b.id, 'success', '', reported);
    } else {
      const open = (await buildsOfRun()).filter((b) => b.state === 'scheduled');
      if (open.length === 0) continue;
      await setBuildPriority(db, open[action.pick % open.length]!.id, action.priority);
    }
    await checkModel();
  }

  async function buildsOfRun(): Promise<BuildRow[]> {
    return rowsOf<BuildRow>(
      await db.execute(sql`
        select b.id, b.derivation_path, b.state, b.priority, b.derived_priority, b.waiting, b.agent_id, b.system, b.required_features,
          coalesce((select t.value from build_tags t where t.build_id = b.id and t.key = 't'), '') as tag
        from builds b where b.system = any(${sql.param(systems)}::text[])`),
    ).map((r) => ({ ...r, priority: Number(r.priority), derived_priority: Number(r.derived_priority), waiting: Number(r.waiting) }));
  }

  function tagsFit(b: BuildRow, agent: { tags: { key: string; value: string }[] }): boolean {
    const tag = (b as BuildRow & { tag: string }).tag;
    return !tag || agent.tags.some((t) => t.key === 't' && t.value === tag);
  }

  async function storedPaths(paths: string[]): Promise<Set<string>> {
    if (paths.length === 0) return new Set();
    const rows = rowsOf<{ path: string }>(await db.execute(sql`select path from store_paths where path = any(${sql.param(paths)}::text[])`));
    return new Set(rows.map((r) => r.path));
  }

  /** The incrementally kept columns equal a model computed from scratch. */
  async function checkModel(): Promise<void> {
    const rows = await buildsOfRun();
    const stored = await storedPaths(made.flatMap((d) => [...d.outputs.values()]));
    const waitingOn = new Map<string, string[]>(); // build id → input paths not stored
    for (const b of rows) {
      if (b.state !== 'scheduled') continue;
      const missing = inputPaths(made[buildOf.get(b.id)!]!).filter((p) => !stored.has(p));
      waitingOn.set(b.id, missing);
      expect({ build: b.id, waiting: b.waiting }).toEqual({ build: b.id, waiting: missing.length });
    }
    // derived(x) = max(own(x), derived(w) for every scheduled w waiting on an output of x), for unfinished x.
    const unfinished = rows.filter((b) => ['scheduled', 'allocated', 'started'].includes(b.state));
    const derived = new Map<string, number>();
    const compute = (b: BuildRow, depth = 0): number => {
      if (derived.has(b.id)) return derived.get(b.id)!;
      if (depth > 100) throw new Error('cycle');
      const outputs = new Set(made[buildOf.get(b.id)!]!.outputs.values());
      let best = b.priority;
      for (const w of rows) {
        if (w.state !== 'scheduled') continue;
        if ((waitingOn.get(w.id) ?? []).some((p) => outputs.has(p))) best = Math.max(best, compute(w, depth + 1));
      }
      derived.set(b.id, best);
      return best;
    };
    for (const b of unfinished) {
      expect({ build: b.id, derived: b.derived_priority }).toEqual({ build: b.id, derived: compute(b) });
    }
  }
}

