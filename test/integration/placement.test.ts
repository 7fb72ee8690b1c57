// Placement by system features (Nix's requiredSystemFeatures), through the real server
// with real Connect clients as agents, under both allocation policies and both
// databases: a build goes only to an agent that supports every feature it requires, and
// an agent with a mandatory feature only gets builds that require it.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { ConnectRequestSchema, type ConnectRequest } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { AsyncQueue } from '../../src/async-queue.js';
import { priorityFirst, type AllocationPolicy } from '../../src/scheduler/allocation.js';
import { fairShareByTag } from '../../src/scheduler/fair-share.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { connectTestAgent, type TestAgentOptions, type TestAgentStream } from '../helpers/agent-stream.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';

const POLICIES: [string, AllocationPolicy][] = [
  ['priority-first', priorityFirst],
  ['fair-share:owner', fairShareByTag('owner')],
];

describe.each(DATABASE_KINDS.flatMap((kind) => POLICIES.map(([name, policy]) => [kind, name, policy] as const)))(
  'placement by system features on %s with %s',
  (kind, _name, policy) => {
    let t: TestCoordinator;
    beforeAll(async () => {
      t = await startTestCoordinator(kind, { allocationPolicy: policy });
    });
    afterAll(async () => {
      await t?.stop();
    });

    /** Each test builds for a system of its own, so no other test's agents or builds meddle. */
    const testSystem = () => `test-${randomUUID().slice(0, 8)}-linux`;

    /** Submits a build with no inputs (ready at once) requiring `features`; its id. */
    async function submitReady(system: string, features: string[] = []): Promise<string> {
      const env = features.length > 0 ? { requiredSystemFeatures: features.join(' ') } : undefined;
      const d = makeDerivation({ name: `placed-${randomUUID().slice(0, 8)}`, system, builder: '/bin/sh', env }, '/nix/store', new Map());
      const { build } = await t.admin.submitBuild({
        derivationPath: d.path,
        derivations: [{ path: d.path, text: Buffer.from(d.text) }],
        tags: [{ key: 'owner', value: 'alice' }],
      });
      await t.coordinator.dispatcher.idle();
      return build!.id;
    }
    const stateOf = async (id: string) => (await t.admin.getBuild({ id })).build!;
    async function withAgents<T>(specs: TestAgentOptions[], run: (agents: TestAgentStream[]) => Promise<T>): Promise<T> {
      const agents: TestAgentStream[] = [];
      try {
        // Builds carry owner=alice (fair share's key), a tag their agents need too.
        for (const spec of specs) agents.push(await connectTestAgent(t, { tags: [{ key: 'owner', value: 'alice' }], ...spec }));
        return await run(agents);
      } finally {
        for (const a of agents) await a.close();
      }
    }

    test('agents without kvm (two alike, claiming as a group) never get a build that requires it; an agent with kvm does', async () => {
      const system = testSystem();
      await withAgents(
        [
          { systems: [system], systemFeatures: ['big-parallel'], maxParallel: 4 },
          { systems: [system], systemFeatures: ['big-parallel'], maxParallel: 4 },
        ],
        async ([a, b]) => {
          const kvm = await submitReady(system, ['kvm']);
          const both = await submitReady(system, ['kvm', 'big-parallel']);
          const ordinary = await submitReady(system);
          const parallel = await submitReady(system, ['big-parallel']);
          // The ordinary and big-parallel builds went to the two agents; the kvm ones wait.
          const placed = await Promise.all([ordinary, parallel].map(stateOf));
          for (const p of placed) expect(p.state).toBe(BuildState.ALLOCATED);
          expect(new Set(placed.map((p) => p.agentId)).size).toBeGreaterThan(0);
          for (const p of placed) expect([a!.agentId, b!.agentId]).toContain(p.agentId);
          expect((await stateOf(kvm)).state).toBe(BuildState.SCHEDULED);
          expect((await stateOf(both)).state).toBe(BuildState.SCHEDULED);

          await withAgents([{ systems: [system], systemFeatures: ['kvm'], maxParallel: 4 }], async ([withKvm]) => {
            expect((await withKvm!.nextAssignment()).buildId).toBe(kvm);
            await t.coordinator.dispatcher.idle();
            // kvm alone is not enough for a build that also needs big-parallel.
            expect((await stateOf(both)).state).toBe(BuildState.SCHEDULED);
          });
          await withAgents([{ systems: [system], systemFeatures: ['kvm', 'big-parallel', 'benchmark'] }], async ([full]) => {
            expect((await full!.nextAssignment()).buildId).toBe(both);
          });
        },
      );
    });

    test('an agent with a mandatory feature gets no ordinary builds, only those that require it', async () => {
      const system = testSystem();
      await withAgents([{ systems: [system], mandatoryFeatures: ['benchmark'], systemFeatures: ['kvm'], maxParallel: 4 }], async ([reserved]) => {
        const ordinary = await submitReady(system);
        const kvmOnly = await submitReady(system, ['kvm']);
        const bench = await submitReady(system, ['benchmark']);
        expect((await reserved!.nextAssignment()).buildId).toBe(bench);
        await t.coordinator.dispatcher.idle();
        expect((await stateOf(ordinary)).state).toBe(BuildState.SCHEDULED);
        expect((await stateOf(kvmOnly)).state).toBe(BuildState.SCHEDULED);
        // Mandatory features count as supported: a build needing benchmark and kvm fits it.
        const both = await submitReady(system, ['benchmark', 'kvm']);
        expect((await reserved!.nextAssignment()).buildId).toBe(both);
        // An ordinary agent takes the ordinary build; kvmOnly stays for an agent with kvm.
        await withAgents([{ systems: [system] }], async ([plain]) => {
          expect((await plain!.nextAssignment()).buildId).toBe(ordinary);
        });
        expect((await stateOf(kvmOnly)).state).toBe(BuildState.SCHEDULED);
      });
    });

    test('a Hello with a feature name Nix would not accept is refused with a message naming it', async () => {
      const { agent } = await t.admin.createAgent({ name: 'bad-feature' });
      const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
      const outbox = new AsyncQueue<ConnectRequest>();
      outbox.push(
        create(ConnectRequestSchema, {
          message: { case: 'hello', value: { systems: ['x86_64-linux'], maxParallelBuilds: 1, systemFeatures: ['kvm', 'big parallel'], version: 'test' } },
        }),
      );
      let refused: unknown;
      try {
        for await (const _ of agentClient(t.coordinator.url, agent!.id, password).connect(outbox)) break;
      } catch (err) {
        refused = err;
      } finally {
        outbox.end();
      }
      expect(refused).toBeInstanceOf(ConnectError);
      expect((refused as ConnectError).code).toBe(Code.InvalidArgument);
      expect((refused as ConnectError).rawMessage).toMatch(/"big parallel"/);
    });
  },
);
