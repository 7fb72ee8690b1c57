// Uploading small stand-in outputs for a build assigned to a hand-driven test agent.
import type { AssignBuild } from '../../gen/kiln/v1/agent_pb.js';
import { uploadTinyOutput } from './simulated-agent.js';
import { agentClient } from '../../src/agent/agent.js';
import type { TestAgentStream } from './agent-stream.js';
import type { TestCoordinator } from './coordinator.js';

export async function uploadTinyOutputs(t: TestCoordinator, agent: TestAgentStream, assign: AssignBuild) {
  const client = agentClient(t.coordinator.url, agent.agentId, agent.password);
  const outputs = [];
  for (const output of assign.outputs) outputs.push(await uploadTinyOutput(client, assign.buildId, output));
  return outputs;
}
