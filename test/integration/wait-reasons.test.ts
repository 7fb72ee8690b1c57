// Why a scheduled build waits, as GetBuild and `kiln build show` (text and --json) say it,
// through the real server on both databases, with real Connect clients as agents: missing
// inputs, a retry's backoff, no connected agent offering its system, tag or feature, a
// mandatory feature that reserves the agents, deactivated agents, agents excluded from the
// build, and no free slot.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { SetupFailureReason } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState, WaitKind, type Build } from '../../gen/kiln/v1/types_pb.js';
import type { Derivation } from '../../src/store/derivation.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { connectTestAgent, type TestAgentOptions, type TestAgentStream } from '../helpers/agent-stream.js';
import { cliEnv, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';

const BACKOFF_MS = 600_000;

describe.each(DATABASE_KINDS)('why a build waits, on %s', (kind) => {
  let t: TestCoordinator;
  beforeAll(async () => {
    t = await startTestCoordinator(kind, {
      retryPolicy: { farm: { maxAttempts: 3, on: ['setup-failure'], initialBackoffMs: BACKOFF_MS, maxBackoffMs: BACKOFF_MS }, byTag: [] },
    });
  });
  afterAll(async () => {
    await t?.stop();
  });

  /** A system of the test's own, so that other tests' agents and builds do not meddle. */
  const testSystem = () => `wait-${randomUUID().slice(0, 8)}-linux`;
  const nonce = () => randomUUID().slice(0, 8);

  async function submit(system: string, opts: { features?: string[]; tags?: { key: string; value: string }[]; input?: boolean } = {}): Promise<{ build: Build; inputOutput?: string }> {
    const known = new Map<string, Derivation>();
    const env = opts.features ? { requiredSystemFeatures: opts.features.join(' ') } : undefined;
    const input = opts.input ? makeDerivation({ name: `in-${nonce()}`, system, builder: '/bin/sh' }, '/nix/store', known) : undefined;
    if (input) known.set(input.path, input.drv);
    const d = makeDerivation(
      { name: `waiting-${nonce()}`, system, builder: '/bin/sh', env, inputDrvs: input ? new Map([[input.path, ['out']]]) : undefined },
      '/nix/store',
      known,
    );
    const { build } = await t.admin.submitBuild({
      derivationPath: d.path,
      derivations: [d, ...(input ? [input] : [])].map((x) => ({ path: x.path, text: Buffer.from(x.text) })),
      tags: opts.tags ?? [],
    });
    await t.coordinator.dispatcher.idle();
    return { build: build!, inputOutput: input?.outputs.get('out') };
  }
  const get = async (id: string) => (await t.admin.getBuild({ id })).build!;
  async function withAgent<T>(spec: TestAgentOptions, run: (agent: TestAgentStream) => Promise<T>): Promise<T> {
    const agent = await connectTestAgent(t, spec);
    try {
      return await run(agent);
    } finally {
      await agent.close();
    }
  }

  test('missing inputs: which paths, which build makes each, and that no upstream was asked; the CLI says the same', async () => {
    const system = testSystem();
    const { build, inputOutput } = await submit(system, { input: true });
    const waiting = await get(build.id);
    expect(waiting.state).toBe(BuildState.SCHEDULED);
    const reason = waiting.waitReason!;
    expect(reason.kind).toBe(WaitKind.MISSING_INPUTS);
    expect(reason.missingInputCount).toBe(1);
    expect(reason.missingInputs.map((m) => m.path)).toEqual([inputOutput]);
    const producer = (await t.admin.listBuilds({ states: [BuildState.SCHEDULED] })).builds.find((b) => b.outputs.some((o) => o.path === inputOutput))!;
    expect(reason.missingInputs[0]!.buildId).toBe(producer.id);
    expect(reason.missingInputs[0]!.upstreamAsked).toBe(false);
    expect(reason.text).toBe(`waiting for 1 input path not in the cache yet: ${inputOutput} (build ${producer.id} makes it); no upstream cache was asked`);

    const text = await runCli(['build', 'show', build.id], cliEnv(t));
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`waiting    ${reason.text}`);
    const json = await runCli(['build', 'show', build.id, '--json'], cliEnv(t));
    expect(json.code).toBe(0);
    const shown = JSON.parse(json.stdout) as { waitReason: { kind: string; text: string; missingInputs: { path: string; buildId: string; upstreamAsked: boolean }[] } };
    expect(shown.waitReason.kind).toBe('WAIT_KIND_MISSING_INPUTS');
    expect(shown.waitReason.text).toBe(reason.text);
    expect(shown.waitReason.missingInputs).toEqual([{ path: inputOutput, buildId: producer.id, upstreamAsked: false }]);
    // The input's build is ready, but no agent builds for this system.
    expect((await get(producer.id)).waitReason?.kind).toBe(WaitKind.NO_MATCHING_AGENT);
  });

  test('no connected agent of its system, tag or feature: named, with the flag of an agent that would take it', async () => {
    const system = testSystem();
    const other = testSystem();
    const tag = { key: 'project', value: 'demo' };
    await withAgent({ systems: [system], systemFeatures: ['big-parallel'] }, async () => {
      const noSystem = (await get((await submit(other)).build.id)).waitReason!;
      expect(noSystem.kind).toBe(WaitKind.NO_MATCHING_AGENT);
      expect(noSystem.unmatchedSystem).toBe(other);
      expect(noSystem.agentsSeenBy).toBe('replica');
      expect(noSystem.text).toBe(`no agent connected to this coordinator builds for ${other} (an agent started with --system ${other} would)`);

      const { build: tagged } = await submit(system, { tags: [tag] });
      const noTag = (await get(tagged.id)).waitReason!;
      expect(noTag.kind).toBe(WaitKind.NO_MATCHING_AGENT);
      expect(noTag.unmatchedTags).toEqual([expect.objectContaining(tag)]);
      expect(noTag.text).toBe(`no agent connected to this coordinator for ${system} offers tag project=demo (an agent started with --tag project=demo would take it)`);
      const text = await runCli(['build', 'show', tagged.id], cliEnv(t));
      expect(text.stdout).toContain(`waiting    ${noTag.text}`);
      const json = JSON.parse((await runCli(['build', 'show', tagged.id, '--json'], cliEnv(t))).stdout) as { waitReason: { kind: string; unmatchedTags: unknown } };
      expect(json.waitReason).toMatchObject({ kind: 'WAIT_KIND_NO_MATCHING_AGENT', unmatchedTags: [tag] });

      const noKvm = (await get((await submit(system, { features: ['kvm', 'big-parallel'] })).build.id)).waitReason!;
      expect(noKvm.unmatchedFeatures).toEqual(['kvm']);
      expect(noKvm.text).toBe(`no agent connected to this coordinator for ${system} offers system feature kvm (an agent started with --system-feature kvm would take it)`);
    });
  });

  test('agents reserved by a mandatory feature, deactivated agents and agents excluded from the build are named as such', async () => {
    const system = testSystem();
    await withAgent({ systems: [system], mandatoryFeatures: ['benchmark'] }, async () => {
      const reserved = (await get((await submit(system)).build.id)).waitReason!;
      expect(reserved.kind).toBe(WaitKind.NO_MATCHING_AGENT);
      expect(reserved.text).toBe('the agents connected to this coordinator that offer what it needs are reserved for builds that require benchmark (mandatory features)');
    });
    const other = testSystem();
    await withAgent({ systems: [other] }, async (agent) => {
      await t.admin.setAgentActive({ agentId: agent.agentId, active: false });
      const { build } = await submit(other);
      const reason = (await get(build.id)).waitReason!;
      expect(reason.kind).toBe(WaitKind.AGENTS_UNAVAILABLE);
      expect(reason.matchingAgents).toBe(1);
      expect(reason.text).toBe('the 1 agent connected to this coordinator that could build it is deactivated or draining (kiln agent activate <id>)');
      const next = agent.nextAssignment();
      await t.admin.setAgentActive({ agentId: agent.agentId, active: true });
      expect((await next).buildId).toBe(build.id);

      // It could not delete the build's outputs: the build is not given to it again, and says so.
      agent.send({ case: 'setupFailure', value: { buildId: build.id, reason: SetupFailureReason.COULD_NOT_DELETE_OUTPUTS, missingInputs: [], message: 'busy' } });
      expect(await agent.nextAcknowledgement()).toBe(build.id);
      const excluded = (await get(build.id)).waitReason!;
      expect(excluded.kind).toBe(WaitKind.NO_MATCHING_AGENT);
      expect(excluded.text).toBe('the 1 agent connected to this coordinator that could build it could not delete its outputs on an earlier attempt, so it is not given it again');
    });
  });

  test('ready but every slot taken: waiting for a free slot; after a failed attempt: the backoff, until when', async () => {
    const system = testSystem();
    await withAgent({ systems: [system], maxParallel: 1 }, async (agent) => {
      const { build: first } = await submit(system);
      expect((await agent.nextAssignment()).buildId).toBe(first.id);
      // An allocated build does not wait: no reason.
      expect((await get(first.id)).waitReason).toBeUndefined();
      const { build: second } = await submit(system);
      const slot = (await get(second.id)).waitReason!;
      expect(slot.kind).toBe(WaitKind.FREE_SLOT);
      expect(slot.matchingAgents).toBe(1);
      expect(slot.text).toBe('ready: waiting for a free slot on 1 agent connected to this coordinator that can build it');

      // The first fails to set up: retried, but only after the backoff.
      const failedAt = Date.now();
      agent.send({ case: 'setupFailure', value: { buildId: first.id, reason: SetupFailureReason.OTHER, missingInputs: [], message: 'disk on fire' } });
      expect((await agent.nextAssignment()).buildId).toBe(second.id);
      const backoff = (await get(first.id)).waitReason!;
      expect(backoff.kind).toBe(WaitKind.RETRY_BACKOFF);
      const until = timestampDate(backoff.notBefore!).getTime();
      expect(until).toBeGreaterThanOrEqual(failedAt + BACKOFF_MS - 5_000);
      expect(backoff.text).toMatch(new RegExp(`^a retry after a failed attempt: not before ${timestampDate(backoff.notBefore!).toISOString().replace(/[.]/g, '\\.')} \\(in \\d+ s\\)$`));
      const text = await runCli(['build', 'show', first.id], cliEnv(t));
      expect(text.stdout).toContain('waiting    a retry after a failed attempt: not before');
    });
  });
});
