import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Code, ConnectError } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import { count } from 'drizzle-orm';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { builds, buildTags, derivationInputs, derivationOutputs, derivations, events } from '../../src/db/schema.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { cliEnv, grpcJsAdminClient, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { chain, closureOf } from '../helpers/derivations.js';
import { makeDerivation, type MadeDerivation } from '../../src/store/make-derivation.js';
import type { Derivation } from '../../src/store/derivation.js';

/** leaf ← mid ← top, made without Nix, each with its own text only. */
function madeChain(tag: string): { leaf: MadeDerivation; mid: MadeDerivation; top: MadeDerivation } {
  const known = new Map<string, Derivation>();
  const make = (name: string, input?: MadeDerivation) => {
    const d = makeDerivation({ name: `${name}-${tag}`, system: 'x86_64-linux', builder: '/bin/sh', inputDrvs: new Map(input ? [[input.path, ['out']]] : []) }, '/nix/store', known);
    known.set(d.path, d.drv);
    return d;
  };
  const leaf = make('leaf');
  const mid = make('mid', leaf);
  return { leaf, mid, top: make('top', mid) };
}

const own = (d: MadeDerivation) => ({ derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }] });

async function snapshot(t: TestCoordinator) {
  const { db } = t.coordinator.database;
  const n = async (table: Parameters<typeof db.select>[0] extends never ? never : typeof builds | typeof derivations | typeof derivationOutputs | typeof derivationInputs | typeof buildTags | typeof events) =>
    Number((await db.select({ n: count() }).from(table))[0]!.n);
  return {
    builds: await n(builds),
    derivations: await n(derivations),
    outputs: await n(derivationOutputs),
    inputs: await n(derivationInputs),
    tags: await n(buildTags),
    events: await n(events),
  };
}

function rejection(err: unknown): ConnectError {
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

describe.each(DATABASE_KINDS)('builds through AdminService on %s', (kind) => {
  let t: TestCoordinator;
  beforeAll(async () => {
    t = await startTestCoordinator(kind);
  });
  afterAll(async () => {
    await t?.stop();
  });

  test('submits a derivation with its inputs and shows outputs, inputs and tags', async () => {
    const { top, mid } = chain(`${kind}-submit`);
    const res = await t.admin.submitBuild({
      derivationPath: top,
      derivations: closureOf(top),
      priority: 7,
      tags: [{ key: 'project', value: 'demo' }],
    });
    expect(res.existing).toBe(false);
    const b = res.build!;
    expect(b.state).toBe(BuildState.SCHEDULED);
    expect(b.priority).toBe(7);
    expect(b.system).toBe('x86_64-linux');
    expect(b.inputDerivations).toEqual([mid]);
    expect(b.outputs.map((o) => o.name)).toEqual(['out']);
    expect(b.tags).toEqual([expect.objectContaining({ key: 'project', value: 'demo' })]);
    const { build } = await t.admin.getBuild({ id: b.id });
    expect(build!.derivationPath).toBe(top);
  });

  test('stores each derivation once however many builds use it, and keeps the submitted bytes', async () => {
    const { top } = chain(`${kind}-once`);
    const closure = closureOf(top);
    const before = await snapshot(t);
    await t.admin.submitBuild({ derivationPath: top, derivations: closure });
    await t.admin.submitBuild({ derivationPath: top, derivations: closure });
    const after = await snapshot(t);
    // Two of the top; its inputs, which nothing built yet, got one build each (not two).
    expect(after.builds - before.builds).toBe(4);
    expect(after.derivations - before.derivations).toBe(3);
    const [row] = await t.coordinator.database.db.select().from(derivations).where((await import('drizzle-orm')).eq(derivations.path, top));
    expect(row!.text).toBe(readFileSync(top, 'utf8'));
  });

  test('submitting the top of a closure submits builds for the inputs nothing builds, with its tags, waiting on each other', async () => {
    const { top, mid, leaf } = chain(`${kind}-missing-${randomUUID().slice(0, 8)}`);
    const res = await t.admin.submitBuild({ derivationPath: top, derivations: closureOf(top), priority: 5, tags: [{ key: 'project', value: 'closure' }] });
    const listed = async (drv: string) => (await t.admin.listBuilds({ derivationPath: drv })).builds;
    const [midBuild] = await listed(mid);
    const [leafBuild] = await listed(leaf);
    expect((await listed(mid)).length).toBe(1);
    expect((await listed(leaf)).length).toBe(1);
    // Only the leaf is ready; the others wait for one input each, and lend it their priority.
    const get = async (id: string) => (await t.admin.getBuild({ id })).build!;
    expect((await get(leafBuild!.id)).waitingInputs).toBe(0);
    expect((await get(midBuild!.id)).waitingInputs).toBe(1);
    expect((await get(res.build!.id)).waitingInputs).toBe(1);
    expect((await get(leafBuild!.id)).derivedPriority).toBe(5);
    expect(leafBuild!.tags).toEqual([expect.objectContaining({ key: 'project', value: 'closure' })]);
    // A second submission of the top finds builds for its inputs already.
    await t.admin.submitBuild({ derivationPath: top });
    expect((await listed(leaf)).length).toBe(1);
    // Lowering the top's priority lowers what it lent; cancelling takes it back entirely.
    await t.admin.setBuildPriority({ id: res.build!.id, priority: 2 });
    expect((await get(leafBuild!.id)).derivedPriority).toBe(2);
    await t.admin.cancelBuild({ id: res.build!.id });
    expect((await get(leafBuild!.id)).derivedPriority).toBe(0);
    expect((await get(midBuild!.id)).derivedPriority).toBe(0);
  });

  test('SubmitBuilds makes many builds in one call, each using derivations others carry, waiting on each other, priorities derived across them', async () => {
    const { leaf, mid, top } = madeChain(`${kind}-batch-${randomUUID().slice(0, 8)}`);
    // The top first: its input's text comes later in the same call.
    const res = await t.admin.submitBuilds({ builds: [{ ...own(top), priority: 9 }, own(mid), { ...own(leaf), tags: [{ key: 'set', value: 'x' }] }] });
    expect(res.builds.map((b) => b.build!.derivationPath)).toEqual([top.path, mid.path, leaf.path]);
    expect(res.builds.every((b) => !b.existing)).toBe(true);
    const [t0, m0, l0] = res.builds.map((b) => b.build!);
    expect([t0!.waitingInputs, m0!.waitingInputs, l0!.waitingInputs]).toEqual([1, 1, 0]);
    // The top's priority pulls its inputs forward.
    expect([t0!.derivedPriority, m0!.derivedPriority, l0!.derivedPriority]).toEqual([9, 9, 9]);
    expect(l0!.tags).toEqual([expect.objectContaining({ key: 'set', value: 'x' })]);
    // One build each: the inputs had builds in the call, so none was made for them.
    for (const d of [leaf, mid, top]) expect((await t.admin.listBuilds({ derivationPath: d.path })).builds).toHaveLength(1);
  });

  test('SubmitBuilds is all or nothing, and names the build at fault', async () => {
    const { leaf, mid, top } = madeChain(`${kind}-batch-bad-${randomUUID().slice(0, 8)}`);
    const before = await snapshot(t);
    const tampered = { derivationPath: mid.path, derivations: [{ path: mid.path, text: Buffer.from(mid.text.replace('/bin/sh', '/bin/ZZ')) }] };
    const err = rejection(await t.admin.submitBuilds({ builds: [own(leaf), tampered, own(top)] }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain('builds[1].derivations[0]');
    const badPriority = rejection(await t.admin.submitBuilds({ builds: [own(leaf), { ...own(mid), priority: 2_000_000 }] }).catch((e: unknown) => e));
    expect(badPriority.code).toBe(Code.InvalidArgument);
    expect(badPriority.rawMessage).toMatch(/^builds\[1\]: priority 2000000/);
    expect(await snapshot(t)).toEqual(before);
  });

  test('needs only the texts the coordinator lacks', async () => {
    const { top, mid, leaf } = chain(`${kind}-partial`);
    await t.admin.submitBuild({ derivationPath: mid, derivations: closureOf(mid) });
    const res = await t.admin.submitBuild({ derivationPath: top, derivations: closureOf(top).filter((d) => d.path !== mid && d.path !== leaf) });
    expect(res.build!.inputDerivations).toEqual([mid]);
  });

  test('ignore_if_output_exists returns the existing build instead of a new one', async () => {
    const { top } = chain(`${kind}-ignore`);
    const first = await t.admin.submitBuild({ derivationPath: top, derivations: closureOf(top) });
    const second = await t.admin.submitBuild({ derivationPath: top, derivations: [], ignoreIfOutputExists: true });
    expect(second.existing).toBe(true);
    expect(second.build!.id).toBe(first.build!.id);
    await t.admin.cancelBuild({ id: first.build!.id });
    const third = await t.admin.submitBuild({ derivationPath: top, derivations: [], ignoreIfOutputExists: true });
    expect(third.existing).toBe(false);
  });

  test('refuses a tampered .drv with INVALID_ARGUMENT naming it, and stores nothing', async () => {
    const { top } = chain(`${kind}-tamper`);
    const closure = closureOf(top);
    const forged = closure.map((d) =>
      d.path === top ? { ...d, text: Buffer.from(Buffer.from(d.text).toString('utf8').replace('"/bin/sh"', '"/bin/bash"')) } : d,
    );
    const before = await snapshot(t);
    const err = rejection(await t.admin.submitBuild({ derivationPath: top, derivations: forged }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain(`derivations[0]: the text of ${top} hashes to`);
    expect(await snapshot(t)).toEqual(before);
  });

  test('refuses a malformed .drv, naming the field and the offset, and stores nothing', async () => {
    const { top } = chain(`${kind}-malformed`);
    const closure = closureOf(top);
    closure[1] = { ...closure[1]!, text: Buffer.from('Derive([("out",') };
    const before = await snapshot(t);
    const err = rejection(await t.admin.submitBuild({ derivationPath: top, derivations: closure }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^derivations\[1\]: \S+ is not a valid derivation: expected .* \(at byte offset \d+\)$/);
    expect(await snapshot(t)).toEqual(before);
  });

  test('refuses a derivation whose input is neither sent nor known, and stores nothing', async () => {
    const { top, mid } = chain(`${kind}-missing`);
    const before = await snapshot(t);
    const err = rejection(
      await t.admin.submitBuild({ derivationPath: top, derivations: closureOf(top).filter((d) => d.path !== mid) }).catch((e: unknown) => e),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain(`input derivation ${mid} is neither in the request's derivations nor known`);
    expect(await snapshot(t)).toEqual(before);
  });

  test('refuses a duplicate build id with ALREADY_EXISTS, and a malformed one with INVALID_ARGUMENT', async () => {
    const { top } = chain(`${kind}-dup`);
    const id = randomUUID();
    await t.admin.submitBuild({ derivationPath: top, derivations: closureOf(top), buildId: id });
    const before = await snapshot(t);
    const err = rejection(await t.admin.submitBuild({ derivationPath: top, derivations: [], buildId: id }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.rawMessage).toContain(id);
    const bad = rejection(await t.admin.submitBuild({ derivationPath: top, derivations: [], buildId: 'not-a-uuid' }).catch((e: unknown) => e));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(await snapshot(t)).toEqual(before);
  });

  test('unknown builds are NOT_FOUND for get, cancel, priority and tags', async () => {
    const id = randomUUID();
    for (const call of [
      () => t.admin.getBuild({ id }),
      () => t.admin.cancelBuild({ id }),
      () => t.admin.setBuildPriority({ id, priority: 1 }),
      () => t.admin.updateBuildTags({ id, set: [{ key: 'a', value: 'b' }] }),
    ]) {
      const err = rejection(await call().catch((e: unknown) => e));
      expect(err.code).toBe(Code.NotFound);
      expect(err.rawMessage).toBe(`no build with id ${id}`);
    }
  });

  test('cancels, re-prioritises and re-tags a build; a canceled build cannot be canceled into another state', async () => {
    const { top } = chain(`${kind}-steer`);
    const { build } = await t.admin.submitBuild({ derivationPath: top, derivations: closureOf(top), tags: [{ key: 'a', value: '1' }, { key: 'b', value: '2' }] });
    const p = await t.admin.setBuildPriority({ id: build!.id, priority: 42 });
    expect(p.build!.priority).toBe(42);
    const tagged = await t.admin.updateBuildTags({ id: build!.id, set: [{ key: 'a', value: 'x' }, { key: 'c', value: '3' }], removeKeys: ['b'] });
    expect(tagged.build!.tags.map((x) => `${x.key}=${x.value}`)).toEqual(['a=x', 'c=3']);
    const c = await t.admin.cancelBuild({ id: build!.id });
    expect(c.build!.state).toBe(BuildState.CANCELED);
    expect(c.build!.endedAt).toBeDefined();
    const again = await t.admin.cancelBuild({ id: build!.id });
    expect(again.build!.state).toBe(BuildState.CANCELED);
  });

  test('lists builds by state, tag and derivation, page by page', async () => {
    const nonce = `${kind}-list-${randomUUID().slice(0, 8)}`;
    const { top } = chain(nonce);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { build } = await t.admin.submitBuild({ derivationPath: top, derivations: i === 0 ? closureOf(top) : [], tags: [{ key: 'run', value: nonce }] });
      ids.push(build!.id);
    }
    await t.admin.cancelBuild({ id: ids[4]! });
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await t.admin.listBuilds({ tags: [{ key: 'run', value: nonce }], derivationPath: top, pageSize: 2, pageToken });
      expect(page.builds.length).toBeLessThanOrEqual(2);
      seen.push(...page.builds.map((b) => b.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual(ids);
    const scheduled = await t.admin.listBuilds({ tags: [{ key: 'run', value: nonce }], derivationPath: top, states: [BuildState.SCHEDULED] });
    expect(scheduled.builds.map((b) => b.id)).toEqual(ids.slice(0, 4));
    const byDrv = await t.admin.listBuilds({ derivationPath: top, states: [BuildState.CANCELED] });
    expect(byDrv.builds.map((b) => b.id)).toEqual([ids[4]]);
    const err = rejection(await t.admin.listBuilds({ pageToken: 'garbage' }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
  });

  test('a grpc-js client built from the .proto files submits and reads builds', async () => {
    const { top } = chain(`${kind}-grpcjs`);
    const { call, client } = grpcJsAdminClient(t.coordinator.url, t.coordinator.adminToken);
    const res = await call<{ build: { id: string; state: string; derivationPath: string } }>('SubmitBuild', {
      derivationPath: top,
      derivations: closureOf(top).map((d) => ({ path: d.path, text: Buffer.from(d.text) })),
      priority: 3,
    });
    expect(res.build.state).toBe('BUILD_STATE_SCHEDULED');
    const got = await call<{ build: { derivationPath: string } }>('GetBuild', { id: res.build.id });
    expect(got.build.derivationPath).toBe(top);
    const err = (await call('GetBuild', { id: randomUUID() }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    client.close();
  });

  test('kiln build submit reads the closure from the store; show, list, priority, tag and cancel work', async () => {
    const { top } = chain(`${kind}-cli`);
    const env = cliEnv(t);
    const submitted = await runCli(['build', 'submit', top, '--priority', '5', '--tag', 'via=cli'], env);
    expect(submitted.stderr).toBe('');
    expect(submitted.code).toBe(0);
    const id = submitted.stdout.trim();
    const shown = await runCli(['build', 'show', id], env);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`derivation ${top}`);
    expect(shown.stdout).toContain('state      scheduled');
    expect(shown.stdout).toContain('tags       via=cli');
    const listed = await runCli(['build', 'list', '--tag', 'via=cli', '--json'], env);
    expect((JSON.parse(listed.stdout) as { id: string }[]).map((b) => b.id)).toContain(id);
    expect((await runCli(['build', 'priority', id, '9'], env)).code).toBe(0);
    expect((await runCli(['build', 'tag', id, 'x=y', '--remove', 'via'], env)).code).toBe(0);
    const json = JSON.parse((await runCli(['build', 'show', id, '--json'], env)).stdout) as { priority: number; tags: unknown[] };
    expect(json.priority).toBe(9);
    expect(json.tags).toEqual([{ key: 'x', value: 'y' }]);
    const canceled = await runCli(['build', 'cancel', id], env);
    expect(canceled.stdout).toContain('canceled');
    const retried = await runCli(['build', 'retry', id], env);
    expect(retried.code).toBe(0);
    expect(retried.stdout).toContain('scheduled');
    const again = await runCli(['build', 'retry', id], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('only failed or canceled builds can be retried');
    const limited = await runCli(['build', 'submit', top, '--timeout', '60', '--max-silent-time', '10', '--json'], env);
    const limitedBuild = (JSON.parse(limited.stdout) as { build: { timeoutSeconds: number; maxSilentSeconds: number } }[])[0]!.build;
    expect(limitedBuild).toMatchObject({ timeoutSeconds: 60, maxSilentSeconds: 10 });
    expect((await runCli(['build', 'submit', top, '--timeout=-1'], env)).stderr).toContain('--timeout must not be negative');
  });

  test('kiln build submit of a tampered file in a fake store prints the reason and exits 1', async () => {
    const res = await runCli(['build', 'submit', '/nix/store/00000000000000000000000000000000-nope.drv'], cliEnv(t));
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("was not sent with the submission (is it in the submitting machine's store?)");
    const bad = await runCli(['build', 'list', '--state', 'bogus'], cliEnv(t));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--state "bogus" is not one of');
  });
});
