// Kiln issue #19: a build submitted again (without ignore_if_output_exists) for a
// derivation whose every output the cache holds went to an agent, whose store held the
// outputs alive and failed to delete them ("0 store paths deleted"). Such a build now
// succeeds at submission, through the real server on both databases: no agent attempt,
// a build-success event saying why, handled by the hooks as any success is.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { CACHED, CACHED_MESSAGE } from '../../src/scheduler/cached-builds.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { buildByHand, DerivationMaker, watchDeliveries } from '../helpers/hand-builds.js';

describe.each(DATABASE_KINDS)('a build of outputs the cache holds already, on %s', (kind) => {
  let t: TestCoordinator;
  let agent: TestAgentStream;
  const maker = new DerivationMaker();
  const nonce = randomUUID().slice(0, 8);
  const lib = maker.make({ name: `lib-${nonce}` });
  const app = maker.make({ name: `app-${nonce}`, outputs: ['out', 'dev'], inputDrvs: new Map([[lib.path, ['out']]]) });

  beforeAll(async () => {
    t = await startTestCoordinator(kind, { submitMissingInputs: false, hookPollMs: 100 });
    agent = await connectTestAgent(t);
    await buildByHand(t, agent, maker, lib);
    await buildByHand(t, agent, maker, app, { references: (o) => (o === 'out' ? [lib.outputs.get('out')!] : []) });
  });
  afterAll(async () => {
    await agent?.close();
    await t?.stop();
  });

  test('succeeds at submission without an agent, with a build-success event the hooks handle', async () => {
    const deliveries = watchDeliveries(t);
    try {
      const { build, existing } = await t.admin.submitBuild({ derivationPath: app.path, derivations: maker.closure(app) });
      expect(existing).toBe(false);
      expect(build!.state).toBe(BuildState.SUCCEEDED);
      const got = (await t.admin.getBuild({ id: build!.id })).build!;
      expect(got.state).toBe(BuildState.SUCCEEDED);
      expect(got.attempts).toEqual([]);
      expect(got.successReason).toBe(CACHED);
      const { events } = await t.admin.listEvents({ buildId: build!.id, types: ['build-success'] });
      expect(events).toHaveLength(1);
      expect(JSON.parse(events[0]!.payloadJson)).toMatchObject({ outcome: 'success', message: CACHED_MESSAGE });
      const published = await deliveries.until((d) => d.hook === 'publish' && d.eventId === Number(events[0]!.id) && d.outcome !== 'interrupted');
      expect(published.outcome).toBe('done');
    } finally {
      deliveries.stop();
    }
  });

  test('is never offered to an agent: the next build the agent gets is one with something to build', async () => {
    const again = await t.admin.submitBuild({ derivationPath: lib.path, derivations: maker.closure(lib) });
    expect(again.build!.state).toBe(BuildState.SUCCEEDED);
    // The build an agent made says no such thing; the one of the cache does.
    const { builds } = await t.admin.listBuilds({ derivationPath: lib.path });
    expect(builds.map((b) => [b.state, b.attemptCount, b.successReason])).toEqual([
      [BuildState.SUCCEEDED, 1, ''],
      [BuildState.SUCCEEDED, 0, CACHED],
    ]);
    const fresh = maker.make({ name: `fresh-${nonce}`, inputDrvs: new Map([[lib.path, ['out']]]) });
    const { build } = await t.admin.submitBuild({ derivationPath: fresh.path, derivations: maker.closure(fresh) });
    expect(build!.state).toBe(BuildState.SCHEDULED);
    const assigned = await agent.nextAssignment();
    expect(assigned.buildId).toBe(build!.id);
  });
});
