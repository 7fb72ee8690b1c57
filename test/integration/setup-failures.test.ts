// What the coordinator does with an agent's setup failures, through the real server:
// outputs it could not delete send the build to another agent (never back to that
// one); inputs it could not get make the build wait for them, with a build submitted
// for an input that lost its output from the cache; inputs it calls missing that the
// cache holds are the agent's fault: told to it, counted, and bounded by the retry policy.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { BuildResult, SetupFailureReason } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { storePaths } from '../../src/db/schema.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import type { Derivation } from '../../src/store/derivation.js';
import { connectTestAgent } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { uploadTinyOutputs } from '../helpers/tiny-outputs.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus-text.js';

const SYSTEM = 'x86_64-linux';

describe.each(DATABASE_KINDS)('setup failures on %s', (kind) => {
  let t: TestCoordinator;
  beforeAll(async () => {
    // Setup failures retried at once, three attempts in all, so a bounded loop ends quickly.
    t = await startTestCoordinator(kind, {
      retryPolicy: { farm: { maxAttempts: 3, on: ['agent-lost', 'setup-failure'], initialBackoffMs: 0, maxBackoffMs: 0 }, byTag: [] },
    });
  });
  afterAll(async () => {
    await t?.stop();
  });

  const get = async (id: string) => (await t.admin.getBuild({ id })).build!;

  test('a build whose outputs an agent could not delete goes to another agent, never back to that one', async () => {
    const tag = { key: 'case', value: `exclusion-${randomUUID().slice(0, 8)}` };
    const first = await connectTestAgent(t, { tags: [tag] });
    const d = makeDerivation({ name: `excl-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh' }, '/nix/store', new Map());
    const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }], tags: [tag] });
    try {
      const assigned = await first.nextAssignment();
      expect(assigned.buildId).toBe(build!.id);
      first.send({
        case: 'setupFailure',
        value: { buildId: build!.id, reason: SetupFailureReason.COULD_NOT_DELETE_OUTPUTS, message: 'still referenced', missingInputs: [] },
      });
      // It is free again, but not for this agent: a pass with the agent's slot free leaves it.
      const second = await connectTestAgent(t, { tags: [tag] });
      try {
        const reassigned = await second.nextAssignment();
        expect(reassigned.buildId).toBe(build!.id);
        expect(reassigned.attempt).toBe(2);
        const attempts = (await get(build!.id)).attempts;
        expect(attempts.map((a) => [a.agentId, a.outcome])).toEqual([
          [first.agentId, 'setup-failure'],
          [second.agentId, ''],
        ]);
        expect(attempts[0]!.message).toContain('still referenced');
      } finally {
        await second.close();
      }
    } finally {
      await first.close();
    }
  });

  test('an input an agent could not get, gone from the cache, makes the build wait for a new build of it', async () => {
    const tag = { key: 'case', value: `missing-${randomUUID().slice(0, 8)}` };
    const agent = await connectTestAgent(t, { tags: [tag], maxParallel: 1 });
    const known = new Map<string, Derivation>();
    const input = makeDerivation({ name: `input-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh' }, '/nix/store', known);
    known.set(input.path, input.drv);
    const user = makeDerivation({ name: `user-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh', inputDrvs: new Map([[input.path, ['out']]]) }, '/nix/store', known);
    try {
      const { build: top } = await t.admin.submitBuild({
        derivationPath: user.path,
        derivations: [user, input].map((d) => ({ path: d.path, text: Buffer.from(d.text) })),
        tags: [tag],
      });
      // The input is built first (submitted for the top), and its output uploaded.
      const inputBuild = await agent.nextAssignment();
      expect(inputBuild.derivationPath).toBe(input.path);
      const outputs = await uploadTinyOutputs(t, agent, inputBuild);
      agent.send({ case: 'buildFinished', value: { buildId: inputBuild.buildId, result: BuildResult.SUCCESS, outputs, message: '' } });
      const userBuild = await agent.nextAssignment();
      expect(userBuild.buildId).toBe(top!.id);

      // The input's output leaves the cache (as a garbage collection would), and the agent
      // says it cannot get it.
      await t.coordinator.database.db.delete(storePaths).where(eq(storePaths.path, input.outputs.get('out')!));
      agent.send({
        case: 'setupFailure',
        value: { buildId: top!.id, reason: SetupFailureReason.MISSING_INPUTS, missingInputs: [input.path], message: 'not substitutable' },
      });
      const rebuild = await agent.nextAssignment();
      expect(rebuild.derivationPath).toBe(input.path);
      expect(rebuild.buildId).not.toBe(inputBuild.buildId);
      const waiting = await get(top!.id);
      expect(waiting.state).toBe(BuildState.SCHEDULED);
      expect(waiting.waitingInputs).toBe(1);
      expect(waiting.attempts.map((a) => a.outcome)).toEqual(['missing-inputs']);
    } finally {
      await agent.close();
    }
  });

  test('an agent calling an input missing that the cache holds is told so, counted, and the build fails after the retry bound instead of looping', async () => {
    const tag = { key: 'case', value: `stale-${randomUUID().slice(0, 8)}` };
    const agent = await connectTestAgent(t, { tags: [tag], maxParallel: 1 });
    const known = new Map<string, Derivation>();
    const input = makeDerivation({ name: `held-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh' }, '/nix/store', known);
    known.set(input.path, input.drv);
    const user = makeDerivation({ name: `stale-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh', inputDrvs: new Map([[input.path, ['out']]]) }, '/nix/store', known);
    const faults = async () => {
      const families = parsePrometheusText(await (await fetch(`${t.coordinator.url}/metrics`)).text());
      return sampleValue(families, 'kiln_agent_false_missing_inputs_total', { agent_id: agent.agentId }) ?? 0;
    };
    try {
      const { build: top } = await t.admin.submitBuild({
        derivationPath: user.path,
        derivations: [user, input].map((d) => ({ path: d.path, text: Buffer.from(d.text) })),
        tags: [tag],
      });
      const inputBuild = await agent.nextAssignment();
      const outputs = await uploadTinyOutputs(t, agent, inputBuild);
      agent.send({ case: 'buildFinished', value: { buildId: inputBuild.buildId, result: BuildResult.SUCCESS, outputs, message: '' } });
      expect((await agent.nextAcknowledged()).buildId).toBe(inputBuild.buildId);

      // The agent calls the input missing on every attempt, as a Nix that remembered a
      // miss did: each is a setup failure, and after the third the build has failed.
      for (let attempt = 1; attempt <= 3; attempt++) {
        const assigned = await agent.nextAssignment();
        expect([assigned.buildId, assigned.attempt]).toEqual([top!.id, attempt]);
        agent.send({
          case: 'setupFailure',
          value: { buildId: top!.id, reason: SetupFailureReason.MISSING_INPUTS, missingInputs: [input.path], message: 'no substituter can build it' },
        });
        const ack = await agent.nextAcknowledged();
        expect(ack.buildId).toBe(top!.id);
        expect(ack.refusal).toBeUndefined();
        expect(ack.warning).toMatch(/the cache holds every input of this build it named/);
      }
      const failed = await get(top!.id);
      expect(failed.state).toBe(BuildState.FAILED);
      expect(failed.waitingInputs).toBe(0);
      expect(failed.attempts.map((a) => a.outcome)).toEqual(['setup-failure', 'setup-failure', 'setup-failure']);
      expect(failed.attempts[0]!.message).toContain('no substituter can build it');
      expect(await faults()).toBe(3);
    } finally {
      await agent.close();
    }
  });
});
