// The tests of a farm on top of a real Nix binary cache, for any builder: the lower half of a DAG is built by the
// machine's Nix and pushed (signed) to a file:// cache served over HTTP; submitting the
// top builds only the upper half in kiln, the agents substitute the lower half from the
// upstream, and an empty store substitutes the top from kiln with both keys trusted.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { parseUpstreams } from '../../src/cache/upstreams/upstream-list.js';
import { builds, upstreamLookups } from '../../src/db/schema.js';
import { startAgentProcess, type AgentProcess, type BuilderName } from './agent-process.js';
import { startTestCoordinator, type TestCoordinator } from './coordinator.js';
import { closureOf, shDrv } from './derivations.js';
import { instantiate, nix, NIX_CONFIG } from './nix.js';
import { parsePrometheusText, sampleValue } from './prometheus-text.js';
import { nixUpstream, type NixUpstream } from './upstream-cache.js';
import { waitForBuilds } from './wait.js';

const run = promisify(execFile);

/** base ← lib (the upstream's half) ← app ← top (kiln's half); top also uses base directly. */
function dag(nonce: string) {
  const paths = instantiate(`let
    base = ${shDrv(`base-${nonce}`, `echo base-${nonce} > $out`)};
    lib = ${shDrv(`lib-${nonce}`, 'cat ${base} > $out; echo lib ${base} >> $out')};
    app = ${shDrv(`app-${nonce}`, 'cat ${lib} > $out; echo app ${lib} >> $out')};
    top = ${shDrv(`top-${nonce}`, 'cat ${app} > $out; echo top ${app} ${base} >> $out')};
  in [ base lib app top ]`);
  const [base, lib, app, top] = paths as [string, string, string, string];
  const out = (drv: string) => nix('nix-store', ['--query', '--outputs', drv]).toString().trim();
  return { drv: { base, lib, app, top }, out: { base: out(base), lib: out(lib), app: out(app), top: out(top) } };
}

export function upstreamFarmTests(builder: BuilderName): void {
  let root: string;
  let upstream: NixUpstream;
  let t: TestCoordinator;
  let agent: AgentProcess | undefined;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), `kiln-upstream-${builder}-`));
    upstream = await nixUpstream(join(root, 'upstream'), `upstream-${randomUUID().slice(0, 6)}`);
    await upstream.serve();
    t = await startTestCoordinator('pglite', {
      upstreams: parseUpstreams([{ url: upstream.url, publicKeys: [upstream.publicKey], for: 'outputs' }]),
      upstreamPollMs: 500,
    });
  });
  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
    await upstream?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('submitting the top builds only what the upstream lacks; agents substitute the rest from it; an empty store gets the top from kiln', async () => {
    const nonce = randomUUID().slice(0, 8);
    const { drv, out } = dag(nonce);
    // The lower half, built by the machine's Nix and pushed with its closure.
    nix('nix-store', ['--realise', drv.lib]);
    upstream.push([out.lib]);
    // As Nix writes a file:// cache by default: xz NARs, which the local builder reads too.
    expect(readFileSync(join(upstream.dir, `${out.lib.slice('/nix/store/'.length, '/nix/store/'.length + 32)}.narinfo`), 'utf8')).toContain('Compression: xz');

    const { agent: a } = await t.admin.createAgent({ name: 'agent' });
    const { password } = await t.admin.createAgentPassword({ agentId: a!.id });
    agent = startAgentProcess({ coordinatorUrl: t.coordinator.url, id: a!.id, password, store: join(root, 'agent'), builder });

    const { build } = await t.admin.submitBuild({ derivationPath: drv.top, derivations: closureOf(drv.top) });
    const state = async () => (await t.admin.getBuild({ id: build!.id })).build!.state;
    await waitForBuilds(
      t.coordinator,
      async () => [BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED].includes(await state()),
      120_000,
      async () => `top is ${BuildState[await state()]}\n${agent!.output().slice(-4000)}`,
    );
    expect(BuildState[await state()]).toBe('SUCCEEDED');

    // Only the upper half got builds: the lower half came from the upstream.
    const made = (await t.coordinator.database.db.select({ drv: builds.derivationPath, state: builds.state }).from(builds)).sort((x, y) => x.drv.localeCompare(y.drv));
    expect(made).toEqual([{ drv: drv.app, state: 'succeeded' }, { drv: drv.top, state: 'succeeded' }].sort((x, y) => x.drv.localeCompare(y.drv)));
    const answers = await t.coordinator.database.db.select().from(upstreamLookups);
    const outcomeOf = (p: string) => answers.find((r) => r.path === p)?.outcome;
    expect({ base: outcomeOf(out.base), lib: outcomeOf(out.lib), app: outcomeOf(out.app) }).toEqual({ base: 'hit', lib: 'hit', app: 'miss' });

    // The agent substituted the lower half from the upstream (its store holds it), built the rest.
    const agentStore = join(root, 'agent');
    expect(readFileSync(join(agentStore, out.lib), 'utf8')).toBe(`base-${nonce}\nlib ${out.base}\n`);

    // Counted per upstream.
    const metrics = parsePrometheusText(await (await fetch(`${t.coordinator.url}/metrics`)).text());
    const lookups = (outcome: string) => sampleValue(metrics, 'kiln_upstream_lookups_total', { upstream: upstream.url, outcome }) ?? 0;
    expect(lookups('hit')).toBeGreaterThanOrEqual(2);
    expect(lookups('miss')).toBeGreaterThanOrEqual(1);
    expect(lookups('error')).toBe(0);
    console.log(`upstream farm (${builder}): 4 derivations, ${made.length} built by kiln, ${lookups('hit') + lookups('miss')} upstream lookups`);

    // A third, empty store: the top from kiln, the lower half from the upstream, both keys trusted.
    const client = join(root, 'client');
    const config = [
      NIX_CONFIG.replace('substituters =', `substituters = ${t.coordinator.url} ${upstream.url}`),
      `trusted-public-keys = ${t.coordinator.nixPublicKey} ${upstream.publicKey}`,
      'require-sigs = true',
    ].join('\n');
    await run('nix-store', ['--store', client, '--realise', out.top], { env: { ...process.env, NIX_CONFIG: config, XDG_CACHE_HOME: `${client}-cache` } });
    expect(readFileSync(join(client, out.top), 'utf8')).toBe(`base-${nonce}\nlib ${out.base}\napp ${out.lib}\ntop ${out.app} ${out.base}\n`);
  }, 180_000);
}

