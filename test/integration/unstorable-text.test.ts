// Agents' text that PostgreSQL cannot store as it is (a NUL, a lone surrogate), through the
// real server: the report is recorded with the text made storable, never refused for it
// and never left to be resent for ever.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { BuildResult } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { connectTestAgent } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { uploadTinyOutputs } from '../helpers/tiny-outputs.js';
import { waitForBuilds } from '../helpers/wait.js';

const SYSTEM = 'x86_64-linux';
// What Nix printed into a failure message: its daemon protocol's framing, and then some.
const NIX_FRAMING = 'error: \u0000\u0005\u0000\u0000\u0000Error builder failed \uD800 end';

describe.each(DATABASE_KINDS)('unstorable text on %s', (kind) => {
  let t: TestCoordinator;
  beforeAll(async () => {
    t = await startTestCoordinator(kind);
  });
  afterAll(async () => {
    await t?.stop();
  });

  const submit = async (tag: { key: string; value: string }) => {
    const d = makeDerivation({ name: `nul-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh' }, '/nix/store', new Map());
    const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }], tags: [tag] });
    return build!.id;
  };
  const state = async (id: string) => (await t.admin.getBuild({ id })).build!;
  const until = (id: string, wanted: BuildState) =>
    waitForBuilds(t.coordinator, async () => (await state(id)).state === wanted, 20_000, async () => `build ${id} is ${BuildState[(await state(id)).state]}`);

  test('a failure message holding NUL bytes and a lone surrogate is recorded with them replaced', async () => {
    const tag = { key: 'case', value: `nul-${randomUUID().slice(0, 8)}` };
    const agent = await connectTestAgent(t, { tags: [tag] });
    try {
      const id = await submit(tag);
      const assigned = await agent.nextAssignment();
      expect(assigned.buildId).toBe(id);
      agent.send({ case: 'buildStarted', value: { buildId: id } });
      agent.send({ case: 'buildFinished', value: { buildId: id, result: BuildResult.FAILURE, outputs: [], message: NIX_FRAMING } });
      await until(id, BuildState.FAILED);
      expect(await agent.nextAcknowledgement()).toBe(id);
      expect(agent.refusals).toEqual([]);
      const build = await state(id);
      expect(build.attempts[0]!.message).toBe('error: \uFFFD\u0005\uFFFD\uFFFD\uFFFDError builder failed \uFFFD end');
      const { events } = await t.admin.listEvents({ buildId: id, types: ['build-failure'] });
      expect(events).toHaveLength(1);
    } finally {
      await agent.close();
    }
  });

  test('a success message holding a NUL byte is recorded, and a huge message is cut', async () => {
    const tag = { key: 'case', value: `nul-ok-${randomUUID().slice(0, 8)}` };
    const agent = await connectTestAgent(t, { tags: [tag] });
    try {
      const id = await submit(tag);
      const assigned = await agent.nextAssignment();
      const outputs = await uploadTinyOutputs(t, agent, assigned);
      agent.send({ case: 'buildFinished', value: { buildId: id, result: BuildResult.SUCCESS, outputs, message: `done\u0000${'x'.repeat(100_000)}` } });
      await until(id, BuildState.SUCCEEDED);
      const message = (await state(id)).attempts[0]!.message;
      expect(message.startsWith('done\uFFFDxxx')).toBe(true);
      expect(message.length).toBeLessThanOrEqual(16 * 1024);
      expect(agent.refusals).toEqual([]);
    } finally {
      await agent.close();
    }
  });
});
