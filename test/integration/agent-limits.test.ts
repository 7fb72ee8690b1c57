// When an agent is given nothing whatever its free slots: over the farm's load limit per
// CPU, under its free-disk limit, or deactivated by an operator; and given work again as
// soon as that ends. Through the real server, with a real Connect client as the agent.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { ConnectRequestSchema, type ConnectRequest, type ConnectResponse } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { AsyncQueue } from '../../src/async-queue.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';

const SYSTEM = 'x86_64-linux';
const GiB = 2n ** 30n;
type Message = NonNullable<MessageInitShape<typeof ConnectRequestSchema>['message']>;

describe.each(DATABASE_KINDS)('agent load limits and deactivation on %s', (kind) => {
  let t: TestCoordinator;
  beforeAll(async () => {
    t = await startTestCoordinator(kind, { loadLimits: { maxLoadPerCpu: 2, minFreeDiskBytes: Number(GiB) } });
  });
  afterAll(async () => {
    await t?.stop();
  });

  /** An agent's control stream: what it sends, and the next assignment it receives. */
  async function connect() {
    const { agent } = await t.admin.createAgent({ name: `limits-${randomUUID().slice(0, 8)}` });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    const outbox = new AsyncQueue<ConnectRequest>();
    const send = (message: Message) => outbox.push(create(ConnectRequestSchema, { message }));
    const assignments = new AsyncQueue<string>();
    let welcomed!: () => void;
    const welcome = new Promise<void>((r) => (welcomed = r));
    const abort = new AbortController();
    send({ case: 'hello', value: { systems: [SYSTEM], maxParallelBuilds: 2, cpuCount: 4, version: 'test' } });
    const reading = (async () => {
      for await (const r of agentClient(t.coordinator.url, agent!.id, password).connect(outbox, { signal: abort.signal }) as AsyncIterable<ConnectResponse>) {
        if (r.message.case === 'welcome') welcomed();
        if (r.message.case === 'assignBuild') assignments.push(r.message.value.buildId);
      }
    })().catch(() => undefined);
    await welcome;
    const iterator = assignments[Symbol.asyncIterator]();
    return {
      agentId: agent!.id,
      send,
      nextAssignment: () => iterator.next().then((r) => r.value as string),
      async close() {
        outbox.end();
        abort.abort();
        await reading;
      },
    };
  }

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
    const deadline = Date.now() + 10_000;
    while (t.coordinator.sessions.get(agentId)?.overloaded() !== overloaded) {
      if (Date.now() > deadline) throw new Error(`the coordinator did not take the load report in (overloaded should be ${overloaded})`);
      await new Promise((r) => setImmediate(r));
    }
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
      expect(await next).toBe(id);

      agent.send({ case: 'loadReport', value: { freeSlots: 1, loadAverage: 0.5, freeDiskBytes: GiB / 2n } });
      await applied(agent.agentId, true);
      const second = agent.nextAssignment();
      const low = await submitReady();
      expect(await stateOf(low)).toBe(BuildState.SCHEDULED);
      agent.send({ case: 'loadReport', value: { freeSlots: 1, loadAverage: 0.5, freeDiskBytes: 2n * GiB } });
      expect(await second).toBe(low);
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
      expect(await next).toBe(id);
    } finally {
      await agent.close();
    }
  });
});
