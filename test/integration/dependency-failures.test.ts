// Nothing waits for ever without saying so, through the real server: a build whose input's
// build failed for good fails too ('dependency-failed', naming the input), up the graph;
// and comes back to the queue when that input can come after all.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { BuildResult } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState, type Build } from '../../gen/kiln/v1/types_pb.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { runCli, cliEnv, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { DerivationMaker } from '../helpers/hand-builds.js';
import { uploadTinyOutputs } from '../helpers/tiny-outputs.js';
import { waitForBuilds } from '../helpers/wait.js';
import type { MadeDerivation } from '../../src/store/make-derivation.js';

describe.each(DATABASE_KINDS)('dependency failures on %s', (kind) => {
  let t: TestCoordinator;
  beforeAll(async () => {
    t = await startTestCoordinator(kind);
  });
  afterAll(async () => {
    await t?.stop();
  });

  const get = async (id: string) => (await t.admin.getBuild({ id })).build!;
  const builds = async (drv: MadeDerivation) => (await t.admin.listBuilds({ derivationPath: drv.path })).builds;
  const until = (what: string, check: () => Promise<boolean>) => waitForBuilds(t.coordinator, check, 20_000, async () => what);

  /** a ← b ← c (c uses b's output, b uses a's), submitted as c: a and b are submitted for it. */
  function chain() {
    const maker = new DerivationMaker();
    const n = randomUUID().slice(0, 8);
    const a = maker.make({ name: `a-${n}` });
    const b = maker.make({ name: `b-${n}`, inputDrvs: new Map([[a.path, ['out']]]) });
    const c = maker.make({ name: `c-${n}`, inputDrvs: new Map([[b.path, ['out']]]) });
    return { maker, a, b, c, tag: { key: 'case', value: `dep-${n}` } };
  }

  async function fail(agent: TestAgentStream, drv: MadeDerivation): Promise<string> {
    const assigned = await agent.nextAssignment();
    expect(assigned.derivationPath).toBe(drv.path);
    agent.send({ case: 'buildFinished', value: { buildId: assigned.buildId, result: BuildResult.FAILURE, outputs: [], message: 'exit 1' } });
    return assigned.buildId;
  }

  async function succeed(agent: TestAgentStream, drv: MadeDerivation): Promise<string> {
    const assigned = await agent.nextAssignment();
    expect(assigned.derivationPath).toBe(drv.path);
    const outputs = await uploadTinyOutputs(t, agent, assigned);
    agent.send({ case: 'buildFinished', value: { buildId: assigned.buildId, result: BuildResult.SUCCESS, outputs, message: '' } });
    return assigned.buildId;
  }

  const dependencyFailed = (b: Build, input: MadeDerivation, inputBuild: string) =>
    expect({ state: b.state, reason: b.failureReason, input: b.failedInput, by: b.failedInputBuildId }).toEqual({
      state: BuildState.FAILED,
      reason: 'dependency-failed',
      input: input.outputs.get('out'),
      by: inputBuild,
    });

  test('a failed input fails its dependents up the graph, saying which input; retrying it brings them back and they succeed', async () => {
    const { maker, a, b, c, tag } = chain();
    const agent = await connectTestAgent(t, { tags: [tag], maxParallel: 1 });
    try {
      const { build: top } = await t.admin.submitBuild({ derivationPath: c.path, derivations: maker.closure(c), tags: [tag] });
      const aId = await fail(agent, a);
      const [bBuild] = await builds(b);
      await until('b and c to fail for a', async () => (await get(top!.id)).state === BuildState.FAILED);
      dependencyFailed(await get(bBuild!.id), a, aId);
      dependencyFailed(await get(top!.id), b, bBuild!.id);
      const { events } = await t.admin.listEvents({ buildId: top!.id, types: ['build-failure'] });
      expect(JSON.parse(events[0]!.payloadJson)).toMatchObject({ reason: 'dependency-failed', input: b.outputs.get('out'), inputBuild: bBuild!.id });
      // `kiln build show` says so.
      const shown = await runCli(['build', 'show', top!.id], cliEnv(t));
      expect(shown.stdout).toContain(`failed     dependency-failed: input ${b.outputs.get('out')} (build ${bBuild!.id} failed)`);

      // The operator retries a: b and c wait for it again, and the whole chain builds.
      await t.admin.retryBuild({ id: aId });
      for (const id of [bBuild!.id, top!.id]) {
        expect(await get(id)).toMatchObject({ state: BuildState.SCHEDULED, failureReason: '', failedInput: '' });
      }
      expect(await succeed(agent, a)).toBe(aId);
      expect(await succeed(agent, b)).toBe(bBuild!.id);
      expect(await succeed(agent, c)).toBe(top!.id);
      await until('c to succeed', async () => (await get(top!.id)).state === BuildState.SUCCEEDED);
      const retried = await t.admin.listEvents({ buildId: top!.id, types: ['build-retried'] });
      expect(JSON.parse(retried.events[0]!.payloadJson)).toMatchObject({ reason: 'dependency-available', input: b.outputs.get('out') });
    } finally {
      await agent.close();
    }
  });

  test('a canceled input fails its dependent; a new build of the input brings it back', async () => {
    const { maker, a, b, tag } = chain();
    const agent = await connectTestAgent(t, { tags: [{ key: 'case', value: 'nobody' }] }); // takes none of these builds
    try {
      const { build: top } = await t.admin.submitBuild({ derivationPath: b.path, derivations: maker.closure(b), tags: [tag] });
      const [aBuild] = await builds(a);
      await t.admin.cancelBuild({ id: aBuild!.id });
      dependencyFailed(await get(top!.id), a, aBuild!.id);
      // Submitting b again submits a new build of its canceled input (the farm builds
      // closures): the first build of b waits for it again too.
      const { build: again } = await t.admin.submitBuild({ derivationPath: b.path, derivations: maker.closure(b), tags: [tag] });
      expect((await builds(a)).map((x) => x.state)).toEqual([BuildState.CANCELED, BuildState.SCHEDULED]);
      for (const id of [top!.id, again!.id]) expect(await get(id)).toMatchObject({ state: BuildState.SCHEDULED, failureReason: '' });
    } finally {
      await agent.close();
    }
  });

  test('a build with two failed inputs comes back only when both can come, naming the one still failed meanwhile', async () => {
    const maker = new DerivationMaker();
    const n = randomUUID().slice(0, 8);
    const tag = { key: 'case', value: `two-${n}` };
    const a1 = maker.make({ name: `a1-${n}` });
    const a2 = maker.make({ name: `a2-${n}` });
    const b = maker.make({ name: `b-${n}`, inputDrvs: new Map([[a1.path, ['out']], [a2.path, ['out']]]) });
    const agent = await connectTestAgent(t, { tags: [tag], maxParallel: 1 });
    try {
      const { build: top } = await t.admin.submitBuild({ derivationPath: b.path, derivations: maker.closure(b), tags: [tag] });
      const firstInput = await agent.nextAssignment();
      const order = firstInput.derivationPath === a1.path ? [a1, a2] : [a2, a1];
      agent.send({ case: 'buildFinished', value: { buildId: firstInput.buildId, result: BuildResult.FAILURE, outputs: [], message: 'exit 1' } });
      const secondId = await fail(agent, order[1]!);
      await until('b to fail', async () => (await get(top!.id)).state === BuildState.FAILED);
      await until('both inputs to fail', async () => (await get(secondId)).state === BuildState.FAILED);
      dependencyFailed(await get(top!.id), order[0]!, firstInput.buildId);
      await t.admin.retryBuild({ id: firstInput.buildId });
      dependencyFailed(await get(top!.id), order[1]!, secondId);
      await t.admin.retryBuild({ id: secondId });
      expect((await get(top!.id)).state).toBe(BuildState.SCHEDULED);
    } finally {
      await agent.close();
    }
  });
});
