// SubmitBuild with existing_outputs = UPSTREAM, through a real HTTP server as a trusted
// upstream and the coordinator's real lookups: a derivation whose every output the
// upstream has (a narinfo that verifies) gets no build, and the response says so; KILN
// alone, an upstream that is down, a narinfo that does not verify, or an output it lacks
// make a build as before; a build of kiln's comes first. And the CLI's
// --ignore-if-output-exists[=kiln|upstream] against the same coordinator.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Code, ConnectError } from '@connectrpc/connect';
import { and, eq, inArray } from 'drizzle-orm';
import { ExistingOutputs } from '../../gen/kiln/v1/admin_pb.js';
import { parseUpstreams } from '../../src/cache/upstreams/upstream-list.js';
import { builds, upstreamLookups } from '../../src/db/schema.js';
import { parseDerivation, type Derivation } from '../../src/store/derivation.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { generateNixKey, renderNixPublicKey } from '../../src/store/nix-signature.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { cliEnv, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { chain } from '../helpers/derivations.js';
import { narInfoUpstream, signedNarInfo, type NarInfoUpstream } from '../helpers/narinfo-upstream.js';

const SYSTEM = 'x86_64-linux';
const trusted = generateNixKey('trusted-upstream-1');
const known = new Map<string, Derivation>();

async function startWithUpstream(kind: (typeof DATABASE_KINDS)[number]) {
  const upstream = await narInfoUpstream();
  const t = await startTestCoordinator(kind, {
    upstreams: parseUpstreams([{ url: upstream.url, publicKeys: [renderNixPublicKey(trusted.publicKey)], for: 'outputs' }]),
  });
  return { upstream, t };
}

describe.each(DATABASE_KINDS)('existing_outputs = UPSTREAM on %s', (kind) => {
  let upstream: NarInfoUpstream;
  let t: TestCoordinator;

  beforeAll(async () => {
    ({ upstream, t } = await startWithUpstream(kind));
  });
  afterAll(async () => {
    await t?.stop();
    if (upstream?.listening()) await upstream.close();
  });

  const db = () => t.coordinator.database.db;
  const buildsOf = async (drvs: string[]) => (await db().select({ drv: builds.derivationPath }).from(builds).where(inArray(builds.derivationPath, drvs))).map((b) => b.drv);
  const lookup = async (path: string) =>
    (await db().select().from(upstreamLookups).where(and(eq(upstreamLookups.path, path), eq(upstreamLookups.upstream, upstream.url))))[0];

  /** A fresh derivation (outputs as named) and its texts as a submission carries them. */
  function fresh(outputs = ['out'], inputs: string[] = []) {
    const d = makeDerivation({ name: `up-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh', outputs, inputDrvs: new Map(inputs.map((p) => [p, ['out']])) }, '/nix/store', known);
    known.set(d.path, d.drv);
    return { path: d.path, outputs: [...d.outputs.values()], derivations: [{ path: d.path, text: Buffer.from(d.text) }] };
  }
  const serve = (path: string, body = signedNarInfo(path, trusted)) => upstream.answers.set(parseStorePath(path).hashPart, { status: 200, body });

  test('every output on the upstream: no build, available_upstream, build unset; the lookup is remembered', async () => {
    const drv = fresh(['out', 'dev']);
    drv.outputs.forEach((o) => serve(o));
    const res = await t.admin.submitBuild({ derivationPath: drv.path, derivations: drv.derivations, existingOutputs: ExistingOutputs.UPSTREAM });
    expect(res.availableUpstream).toBe(true);
    expect(res.existing).toBe(false);
    expect(res.build).toBeUndefined();
    expect(await buildsOf([drv.path])).toEqual([]);
    for (const o of drv.outputs) expect((await lookup(o))?.outcome).toBe('hit');
  });

  test('KILN alone (and the old bool) ignores the upstream: a build is made', async () => {
    const drv = fresh();
    drv.outputs.forEach((o) => serve(o));
    const kiln = await t.admin.submitBuild({ derivationPath: drv.path, derivations: drv.derivations, existingOutputs: ExistingOutputs.KILN });
    expect(kiln.availableUpstream).toBe(false);
    expect(kiln.existing).toBe(false);
    expect(kiln.build?.derivationPath).toBe(drv.path);
    const other = fresh();
    other.outputs.forEach((o) => serve(o));
    const legacy = await t.admin.submitBuild({ derivationPath: other.path, derivations: other.derivations, ignoreIfOutputExists: true });
    expect(legacy.availableUpstream).toBe(false);
    expect(legacy.build?.derivationPath).toBe(other.path);
    // KILN still finds kiln's own build.
    const again = await t.admin.submitBuild({ derivationPath: drv.path, derivations: [], existingOutputs: ExistingOutputs.KILN });
    expect(again).toMatchObject({ existing: true, availableUpstream: false });
    expect(again.build?.id).toBe(kiln.build?.id);
  });

  test('a build of kiln\'s for the outputs comes first: UPSTREAM returns it as existing', async () => {
    const drv = fresh();
    const first = await t.admin.submitBuild({ derivationPath: drv.path, derivations: drv.derivations });
    drv.outputs.forEach((o) => serve(o));
    const res = await t.admin.submitBuild({ derivationPath: drv.path, derivations: [], existingOutputs: ExistingOutputs.UPSTREAM });
    expect(res).toMatchObject({ existing: true, availableUpstream: false });
    expect(res.build?.id).toBe(first.build?.id);
  });

  test('an output the upstream lacks, or a narinfo that does not verify: a build is made', async () => {
    const partial = fresh(['out', 'dev']);
    serve(partial.outputs[0]!);
    const a = await t.admin.submitBuild({ derivationPath: partial.path, derivations: partial.derivations, existingOutputs: ExistingOutputs.UPSTREAM });
    expect(a.availableUpstream).toBe(false);
    expect(a.build?.derivationPath).toBe(partial.path);

    const tampered = fresh();
    serve(tampered.outputs[0]!, signedNarInfo(tampered.outputs[0]!, trusted).replace('NarSize: 120', 'NarSize: 121'));
    const b = await t.admin.submitBuild({ derivationPath: tampered.path, derivations: tampered.derivations, existingOutputs: ExistingOutputs.UPSTREAM });
    expect(b.availableUpstream).toBe(false);
    expect(b.build?.derivationPath).toBe(tampered.path);
    expect(await lookup(tampered.outputs[0]!)).toMatchObject({ outcome: 'miss', reason: expect.stringMatching(/no valid signature by a trusted key/) });

    const stranger = fresh();
    serve(stranger.outputs[0]!, signedNarInfo(stranger.outputs[0]!, generateNixKey('stranger-1')));
    const c = await t.admin.submitBuild({ derivationPath: stranger.path, derivations: stranger.derivations, existingOutputs: ExistingOutputs.UPSTREAM });
    expect(c.build?.derivationPath).toBe(stranger.path);
  });

  test('an upstream that is down: a build is made; once back, it counts again', async () => {
    const down = fresh();
    serve(down.outputs[0]!);
    await upstream.close();
    try {
      const res = await t.admin.submitBuild({ derivationPath: down.path, derivations: down.derivations, existingOutputs: ExistingOutputs.UPSTREAM });
      expect(res.availableUpstream).toBe(false);
      expect(res.build?.derivationPath).toBe(down.path);
      expect(await lookup(down.outputs[0]!)).toMatchObject({ outcome: 'error', reason: expect.stringMatching(/ECONNREFUSED/) });
    } finally {
      await upstream.listen();
    }
    const back = fresh();
    serve(back.outputs[0]!);
    expect((await t.admin.submitBuild({ derivationPath: back.path, derivations: back.derivations, existingOutputs: ExistingOutputs.UPSTREAM })).availableUpstream).toBe(true);
  });

  test('the top of a closure on the upstream: nothing is built, inputs included', async () => {
    const leaf = fresh();
    const top = fresh(['out'], [leaf.path]);
    serve(top.outputs[0]!);
    const res = await t.admin.submitBuild({ derivationPath: top.path, derivations: [...top.derivations, ...leaf.derivations], existingOutputs: ExistingOutputs.UPSTREAM });
    expect(res.availableUpstream).toBe(true);
    expect(await buildsOf([top.path, leaf.path])).toEqual([]);
  });

  test('SubmitBuilds: each build as its outputs are, twice the same derivation included', async () => {
    const onUpstream = fresh();
    serve(onUpstream.outputs[0]!);
    const notThere = fresh();
    const res = await t.admin.submitBuilds({
      builds: [
        { derivationPath: onUpstream.path, derivations: onUpstream.derivations, existingOutputs: ExistingOutputs.UPSTREAM },
        { derivationPath: notThere.path, derivations: notThere.derivations, existingOutputs: ExistingOutputs.UPSTREAM },
        { derivationPath: onUpstream.path, derivations: onUpstream.derivations, existingOutputs: ExistingOutputs.UPSTREAM },
        { derivationPath: notThere.path, derivations: notThere.derivations, existingOutputs: ExistingOutputs.UPSTREAM },
      ],
    });
    expect(res.builds.map((b) => [b.availableUpstream, b.existing, b.build?.derivationPath])).toEqual([
      [true, false, undefined],
      [false, false, notThere.path],
      [true, false, undefined],
      [false, true, notThere.path],
    ]);
    expect(res.builds[3]!.build?.id).toBe(res.builds[1]!.build?.id);
    expect(await buildsOf([onUpstream.path, notThere.path])).toEqual([notThere.path]);
  });

  test('an existing_outputs value kiln does not know is refused', async () => {
    const drv = fresh();
    const err = await t.admin.submitBuild({ derivationPath: drv.path, derivations: drv.derivations, existingOutputs: 7 as ExistingOutputs }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).message).toMatch(/existing_outputs 7/);
  });
});

describe('kiln build submit --ignore-if-output-exists[=kiln|upstream]', () => {
  let upstream: NarInfoUpstream;
  let t: TestCoordinator;

  beforeAll(async () => {
    ({ upstream, t } = await startWithUpstream('pglite'));
  });
  afterAll(async () => {
    await t?.stop();
    if (upstream?.listening()) await upstream.close();
  });

  /** A real .drv in the store, its outputs served by the upstream. */
  function served(): { drv: string } {
    const { leaf } = chain(randomUUID().slice(0, 8));
    for (const o of parseDerivation(readFileSync(leaf, 'utf8')).outputs.values()) {
      upstream.answers.set(parseStorePath(o.path).hashPart, { status: 200, body: signedNarInfo(o.path, trusted) });
    }
    return { drv: leaf };
  }

  test('=upstream: no build, a line that says so (text and --json)', async () => {
    const { drv } = served();
    const text = await runCli(['build', 'submit', drv, '--ignore-if-output-exists=upstream'], cliEnv(t));
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout.trim()).toBe(`${drv}: no build made, its outputs are available from an upstream cache`);
    const json = await runCli(['build', 'submit', drv, '--ignore-if-output-exists=upstream', '--json', '--wait'], cliEnv(t));
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([{ build: null, existing: false, availableUpstream: true }]);
    expect((await t.admin.listBuilds({ derivationPath: drv })).builds).toEqual([]);
  });

  test('bare, and =kiln: kiln\'s builds only, as before', async () => {
    const { drv } = served();
    const bare = await runCli(['build', 'submit', drv, '--ignore-if-output-exists', '--json'], cliEnv(t));
    expect(bare.stderr).toBe('');
    const [made] = JSON.parse(bare.stdout) as { build: { id: string; derivationPath: string }; existing: boolean; availableUpstream: boolean }[];
    expect(made).toMatchObject({ existing: false, availableUpstream: false, build: { derivationPath: drv } });
    const kiln = await runCli(['build', 'submit', '--ignore-if-output-exists=kiln', drv], cliEnv(t));
    expect(kiln.stdout.trim()).toBe(`${made!.build.id} (existing build)`);
    // With a build of kiln's there, upstream too finds that one.
    const up = await runCli(['build', 'submit', drv, '--ignore-if-output-exists=upstream'], cliEnv(t));
    expect(up.stdout.trim()).toBe(`${made!.build.id} (existing build)`);
    await t.admin.cancelBuild({ id: made!.build.id });
  });

  test('a value it does not know: usage error naming the choices', async () => {
    const { drv } = served();
    const r = await runCli(['build', 'submit', drv, '--ignore-if-output-exists=elsewhere'], cliEnv(t));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--ignore-if-output-exists takes kiln (the default) or upstream, not "elsewhere"');
    const help = await runCli(['build', 'submit', '--help']);
    expect(help.stdout).toContain('--ignore-if-output-exists[=kiln|upstream]');
  });
});
