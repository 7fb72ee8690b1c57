// A new agent's control stream driven by hand, with a real Connect client: what it sends,
// and the assignments it receives, for tests of how the coordinator treats an agent.
import { randomUUID } from 'node:crypto';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { ConnectRequestSchema, type Acknowledged, type AssignBuild, type ConnectRequest, type ConnectResponse } from '../../gen/kiln/v1/agent_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { AsyncQueue } from '../../src/async-queue.js';
import type { TestCoordinator } from './coordinator.js';

export type AgentMessage = NonNullable<MessageInitShape<typeof ConnectRequestSchema>['message']>;

export interface TestAgentStream {
  agentId: string;
  password: string;
  send(message: AgentMessage): void;
  /** The next AssignBuild the coordinator sends (in order). */
  nextAssignment(): Promise<AssignBuild>;
  /** The build id of the next report the coordinator acknowledged (in order). */
  nextAcknowledgement(): Promise<string>;
  /** The next acknowledgement itself, with its refusal or warning (the same sequence). */
  nextAcknowledged(): Promise<Acknowledged>;
  /** Every refusal the coordinator answered a report with, in order. */
  refusals: { buildId: string; message: string }[];
  close(): Promise<void>;
}

export interface TestAgentOptions {
  systems?: string[];
  maxParallel?: number;
  tags?: { key: string; value: string }[];
  systemFeatures?: string[];
  mandatoryFeatures?: string[];
}

export async function connectTestAgent(t: TestCoordinator, opts: TestAgentOptions = {}): Promise<TestAgentStream> {
  const { agent } = await t.admin.createAgent({ name: `test-${randomUUID().slice(0, 8)}` });
  const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
  const outbox = new AsyncQueue<ConnectRequest>();
  const send = (message: AgentMessage) => outbox.push(create(ConnectRequestSchema, { message }));
  const assignments = new AsyncQueue<AssignBuild>();
  const acknowledgements = new AsyncQueue<Acknowledged>();
  const refusals: { buildId: string; message: string }[] = [];
  let welcomed!: () => void;
  const welcome = new Promise<void>((r) => (welcomed = r));
  const abort = new AbortController();
  send({
    case: 'hello',
    value: {
      systems: opts.systems ?? ['x86_64-linux'],
      maxParallelBuilds: opts.maxParallel ?? 2,
      cpuCount: 4,
      tags: opts.tags ?? [],
      systemFeatures: opts.systemFeatures ?? [],
      mandatoryFeatures: opts.mandatoryFeatures ?? [],
      version: 'test',
    },
  });
  const reading = (async () => {
    for await (const r of agentClient(t.coordinator.url, agent!.id, password).connect(outbox, { signal: abort.signal }) as AsyncIterable<ConnectResponse>) {
      if (r.message.case === 'welcome') welcomed();
      if (r.message.case === 'assignBuild') assignments.push(r.message.value);
      if (r.message.case === 'acknowledged') {
        const { buildId, refusal } = r.message.value;
        if (refusal) refusals.push({ buildId, message: refusal.message });
        acknowledgements.push(r.message.value);
      }
    }
  })().catch(() => undefined);
  await welcome;
  const iterator = assignments[Symbol.asyncIterator]();
  const acks = acknowledgements[Symbol.asyncIterator]();
  return {
    agentId: agent!.id,
    password,
    send,
    nextAssignment: () => iterator.next().then((r) => r.value as AssignBuild),
    nextAcknowledgement: () => acks.next().then((r) => (r.value as Acknowledged).buildId),
    nextAcknowledged: () => acks.next().then((r) => r.value as Acknowledged),
    refusals,
    async close() {
      outbox.end();
      abort.abort();
      await reading;
    },
  };
}
