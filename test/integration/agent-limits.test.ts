// When an agent is given nothing whatever its free slots: over the farm's load limit per
// CPU, under its free-disk limit, or deactivated by an operator; and given work again as
// soon as that ends. Through the real server, with a real Connect client as the agent.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { connectTestAgent } from '../helpers/agent-stream.js';
import { waitUntil } from '../helpers/wait.js';

const SYSTEM = 'x86_64-linux';
const GiB = 2n ** 30n;

describe.each(DATABASE_KINDS)('agent load limits and deactivation on %s', (kind) => {
  let t: TestCoordinator;
  beforeAll(async () => {
    t = await startTestCoordinator(kind, { loadLimits: { maxLoadPerCpu: 2, minFreeDiskBytes: Number(GiB) } });
  });
  afterAll(async () => {
    await t?.stop();
  });

  const connect = () => connectTestAgent(t);

  /** Submits a build with no inputs (ready at once) and lets the dispatcher act on it. */
  async function submitReady(): Promise<string> {
    const d = makeDerivation({ name: `ready-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh' }, '/nix/store', new Map());
    const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }] });
    await t.coordinator.dispatcher.idle();
    return build!.id;
  }
  /**
   * Resolves once the coordinator has taken the agent's last load report in: the report
   * travels on the agent's stream, the submission on another connection.
   */
  async function applied(agentId: string, overloaded: boolean): Promise<void> {
    await waitUntil(
      () => t.coordinator.sessions.get(agentId)?.overloaded() === overloaded,
      10_000,
      () => `the coordinator did not take the load report in (overloaded should be ${overloaded})`,
      1,
    );
  }
  const stateOf = async (id: string) => (await t.admin.getBuild({ id })).build!.state;

  test('an agent over its load per CPU, or short of disk, is given nothing until its report says otherwise', async () => {
    const agent = await connect();
    try {
      agent.send({ case: 'loadReport', value: { freeSlots: 2, loadAverage: 9, freeDiskBytes: 100n * GiB } }); // 2.25 per CPU
      await applied(agent.agentId, true);
      const next = agent.nextAssignment();
      const id = await submitReady();
      expect(await stateOf(id)).toBe(BuildState.SCHEDULED);
      agent.send({ case: 'loadReport', value: { freeSlots: 2, loadAverage: 7, freeDiskBytes: 100n * GiB } }); // 1.75 per CPU
      expect((await next).buildId).toBe(id);

      agent.send({ case: 'loadReport', value: { freeSlots: 1, loadAverage: 0.5, freeDiskBytes: GiB / 2n } });
      await applied(agent.agentId, true);
      const second = agent.nextAssignment();
      const low = await submitReady();
      expect(await stateOf(low)).toBe(BuildState.SCHEDULED);
      agent.send({ case: 'loadReport', value: { freeSlots: 1, loadAverage: 0.5, freeDiskBytes: 2n * GiB } });
      expect((await second).buildId).toBe(low);
    } finally {
      await agent.close();
    }
  });

  test('a deactivated agent keeps its stream but is given nothing until activated', async () => {
    const agent = await connect();
    try {
      const { agent: record } = await t.admin.setAgentActive({ agentId: agent.agentId, active: false });
      expect(record!.active).toBe(false);
      const next = agent.nextAssignment();
      const id = await submitReady();
      expect(await stateOf(id)).toBe(BuildState.SCHEDULED);
      await t.admin.setAgentActive({ agentId: agent.agentId, active: true });
      expect((await next).buildId).toBe(id);
    } finally {
      await agent.close();
    }
  });
});
