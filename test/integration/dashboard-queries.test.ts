// What the dashboard asks AdminService for, on both databases: builds newest first with
// keyset page tokens and filters, the relations of a build (inputs and dependants with
// their latest builds), ready builds an agent connected here could take, and the farm's
// history from build and attempt timestamps.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Code, ConnectError } from '@connectrpc/connect';
import { randomUUID } from 'node:crypto';
import { BuildResult } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { buildByHand, DerivationMaker } from '../helpers/hand-builds.js';
import { waitForBuilds } from '../helpers/wait.js';
import { farmHistory } from '../../src/scheduler/queue-history.js';

describe.each(DATABASE_KINDS)('the dashboard\'s AdminService calls on %s', (kind) => {
  let t: TestCoordinator;
  let agent: TestAgentStream;
  const nonce = randomUUID().slice(0, 8);
  const system = `q${nonce}-linux`;
  const maker = new DerivationMaker();
  const make = (name: string, inputs: string[] = []) =>
    maker.make({ name, system, args: ['-c', `echo ${name} > $out`], inputDrvs: new Map(inputs.map((p) => [p, ['out']])) });

  beforeAll(async () => {
    t = await startTestCoordinator(kind, { submitMissingInputs: false });
    agent = await connectTestAgent(t, { systems: [system], maxParallel: 1 });
  });
  afterAll(async () => {
    await agent?.close();
    await t?.stop();
  });

  test('lists builds newest first by a keyset token, filtered by system, state, tag and name text', async () => {
    const offTag = { key: 'pool', value: `none-${nonce}` };
    const made = Array.from({ length: 7 }, (_, i) => make(`list_${nonce}-${i}${i === 3 ? '-Odd' : ''}`));
    const { builds } = await t.admin.submitBuilds({ builds: made.map((d) => ({ derivationPath: d.path, derivations: maker.closure(d), tags: [offTag] })) });
    const ids = builds.map((b) => b.build!.id);
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await t.admin.listBuilds({ newestFirst: true, system, pageSize: 3, pageToken, tags: [offTag] });
      expect(page.builds.length).toBeLessThanOrEqual(3);
      seen.push(...page.builds.map((b) => b.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([...ids].reverse());

    // A token keeps its order: asked the other way, it is refused with a reason.
    const first = await t.admin.listBuilds({ newestFirst: true, system, pageSize: 3 });
    const refused = await t.admin.listBuilds({ system, pageSize: 3, pageToken: first.nextPageToken }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.InvalidArgument);
    expect((refused as ConnectError).rawMessage).toBe('page_token continues a list newest first: ask with the same newest_first as the first page');

    // Name text in any case; % and _ are literal, not patterns.
    const wild = make(`listX${nonce}-wild`);
    const wildBuild = (await t.admin.submitBuild({ derivationPath: wild.path, derivations: maker.closure(wild), tags: [offTag] })).build!;
    expect((await t.admin.listBuilds({ nameContains: `LIST_${nonce}-3-odd` })).builds.map((b) => b.id)).toEqual([ids[3]]);
    expect((await t.admin.listBuilds({ nameContains: `list_${nonce}` })).builds.map((b) => b.id)).toEqual(ids);
    expect((await t.admin.listBuilds({ nameContains: `listx${nonce}` })).builds.map((b) => b.id)).toEqual([wildBuild.id]);
    expect((await t.admin.listBuilds({ nameContains: `list%${nonce}` })).builds).toEqual([]);
    expect((await t.admin.listBuilds({ nameContains: `list${nonce}` })).builds).toEqual([]);
    expect((await t.admin.listBuilds({ nameContains: `list_${nonce}`, newestFirst: true, pageSize: 2 })).builds.map((b) => b.id)).toEqual([ids[6], ids[5]]);
    expect((await t.admin.listBuilds({ system: 'nowhere-linux' })).builds).toEqual([]);
    expect((await t.admin.listBuilds({ system, states: [BuildState.SUCCEEDED] })).builds.filter((b) => ids.includes(b.id))).toEqual([]);

    // without_inputs leaves the inputs out of a list; a plain list has them.
    const withInput = make(`list-input-${nonce}`, [made[0]!.path]);
    await t.admin.submitBuild({ derivationPath: withInput.path, derivations: maker.closure(withInput), tags: [offTag] });
    const named = { nameContains: `list-input-${nonce}` };
    expect((await t.admin.listBuilds(named)).builds[0]!.inputDerivations).toEqual([made[0]!.path]);
    expect((await t.admin.listBuilds({ ...named, withoutInputs: true })).builds[0]!.inputDerivations).toEqual([]);

    // Eight are ready (the one with an input waits for it), none for the agent connected
    // here: it lacks their tag.
    const summary = await t.admin.getQueueSummary({});
    expect(summary.ready.find((r) => r.system === system)).toMatchObject({ count: 8, matchingConnected: 0 });
    const other = await connectTestAgent(t, { systems: [system], maxParallel: 1, tags: [offTag] });
    try {
      // An agent with their tag takes one (its one slot); it could take the other seven.
      await waitForBuilds(t.coordinator, async () => (await t.admin.getQueueSummary({})).ready.find((r) => r.system === system)?.matchingConnected === 7, 20_000, async () => JSON.stringify((await t.admin.getQueueSummary({})).ready));
    } finally {
      await other.close();
    }
  });

  test('relates a build to its inputs\' and its dependants\' latest builds', async () => {
    const leaf = make(`rel-leaf-${nonce}`);
    const lone = make(`rel-lone-${nonce}`);
    const mid = make(`rel-mid-${nonce}`, [leaf.path, lone.path]);
    const a = make(`rel-a-${nonce}`, [mid.path]);
    const b = make(`rel-b-${nonce}`, [mid.path]);
    const tag = [{ key: 'pool', value: `rel-${nonce}` }];
    const submit = async (d: typeof leaf) => (await t.admin.submitBuild({ derivationPath: d.path, derivations: maker.closure(d), tags: tag })).build!;
    await submit(leaf);
    const leafAgain = await submit(leaf);
    const midBuild = await submit(mid);
    const aBuild = await submit(a);
    await t.admin.cancelBuild({ id: aBuild.id });
    const bBuild = await submit(b);

    const r = await t.admin.getBuildRelations({ id: midBuild.id });
    expect(r.inputs.map((x) => ({ path: x.derivationPath, build: x.buildId, state: x.state }))).toEqual(
      [
        { path: leaf.path, build: leafAgain.id, state: BuildState.SCHEDULED },
        { path: lone.path, build: '', state: BuildState.UNSPECIFIED },
      ].sort((x, y) => x.path.localeCompare(y.path)),
    );
    expect(r.dependantCount).toBe(2);
    expect(r.dependants.map((x) => [x.derivationPath, x.buildId, x.state])).toEqual(
      [
        [a.path, aBuild.id, BuildState.CANCELED],
        [b.path, bBuild.id, BuildState.SCHEDULED],
      ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
    );
    const limited = await t.admin.getBuildRelations({ id: midBuild.id, dependantsLimit: 1 });
    expect(limited.dependants.length).toBe(1);
    expect(limited.dependantCount).toBe(2);
    await expect(t.admin.getBuildRelations({ id: randomUUID() })).rejects.toMatchObject({ code: Code.NotFound });
  });

  test('draws the last hours from timestamps: queue depth, builds finished per minute, builds each agent held', async () => {
    const ok = make(`hist-ok-${nonce}`);
    await buildByHand(t, agent, maker, ok);
    const bad = make(`hist-bad-${nonce}`);
    const failed = (await t.admin.submitBuild({ derivationPath: bad.path, derivations: maker.closure(bad) })).build!;
    expect((await agent.nextAssignment()).buildId).toBe(failed.id);
    agent.send({ case: 'buildFinished', value: { buildId: failed.id, result: BuildResult.FAILURE, outputs: [], message: 'exit 1' } });
    await waitForBuilds(t.coordinator, async () => (await t.admin.getBuild({ id: failed.id })).build!.state === BuildState.FAILED, 20_000, async () => `build ${failed.id} did not fail`);
    const held = make(`hist-held-${nonce}`);
    const holding = (await t.admin.submitBuild({ derivationPath: held.path, derivations: maker.closure(held) })).build!;
    expect((await agent.nextAssignment()).buildId).toBe(holding.id);
    agent.send({ case: 'buildStarted', value: { buildId: holding.id } });
    await waitForBuilds(t.coordinator, async () => (await t.admin.getBuild({ id: holding.id })).build!.state === BuildState.STARTED, 20_000, async () => `build ${holding.id} did not start`);

    const h = await t.admin.getFarmHistory({ minutes: 60 });
    expect(h.stepSeconds).toBe(60);
    const times = h.queueDepth.map((p) => p.at!.seconds);
    expect(times.length).toBeGreaterThanOrEqual(60);
    expect(times.slice(0, -1).filter((s) => Number(s) % 60 !== 0)).toEqual([]);
    expect([...times].sort((x, y) => Number(x - y))).toEqual(times);
    // The last point is now: the queue as GetQueueSummary counts it.
    const summary = await t.admin.getQueueSummary({});
    const now = h.queueDepth[h.queueDepth.length - 1]!;
    const count = (s: BuildState) => summary.counts.filter((c) => c.state === s).reduce((n, c) => n + c.count, 0);
    expect({ scheduled: now.scheduled, allocated: now.allocated, started: now.started }).toEqual({
      scheduled: count(BuildState.SCHEDULED),
      allocated: count(BuildState.ALLOCATED),
      started: count(BuildState.STARTED),
    });
    expect(now.started).toBe(1);
    // Two builds ended (one a success, one a failure), and one was canceled by the test before.
    const ended = h.finished.reduce((n, m) => ({ succeeded: n.succeeded + m.succeeded, failed: n.failed + m.failed, canceled: n.canceled + m.canceled }), { succeeded: 0, failed: 0, canceled: 0 });
    expect(ended).toEqual({ succeeded: 1, failed: 1, canceled: 1 });
    const series = h.agentSlots.find((s) => s.agentId === agent.agentId)!;
    expect(series.agentName).toBe((await t.admin.listAgents({})).agents.find((a) => a.id === agent.agentId)!.name);
    expect(series.inUse.length).toBe(h.queueDepth.length);
    expect(series.inUse.filter((v) => v > 0).length).toBeGreaterThan(0);
    expect(series.inUse.filter((v) => v < 0 || v > 1)).toEqual([]);
    // Every replica answers the same: computed again from the database (as another replica
    // would), every grid point both have, and the builds each agent held over each whole
    // step, agree.
    const again = await farmHistory(t.coordinator.database.db, 60);
    const grid = (points: { at: number; v: string }[]) => new Map(points.slice(0, -1).map((p) => [p.at, p.v]));
    const first = grid(h.queueDepth.map((p, i) => ({ at: Number(p.at!.seconds), v: JSON.stringify([p.scheduled, p.allocated, p.started, series.inUse[i]]) })));
    const againSeries = again.agentSlots.find((s) => s.agentId === agent.agentId)!;
    const second = grid(again.queueDepth.map((p, i) => ({ at: p.at.getTime() / 1000, v: JSON.stringify([p.scheduled, p.allocated, p.started, againSeries.inUse[i]]) })));
    const both = [...first.keys()].filter((at) => second.has(at) && at < Math.max(...second.keys()));
    expect(both.length).toBeGreaterThanOrEqual(55);
    expect(both.map((at) => second.get(at))).toEqual(both.map((at) => first.get(at)));
    expect((await t.admin.getFarmHistory({ minutes: 100_000 })).stepSeconds).toBe(720);
  });
});
