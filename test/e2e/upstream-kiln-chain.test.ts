// kiln chains: a second kiln coordinator (a /gnu/store farm, its narinfos signed with its
// Guix key) is the upstream of a first, for outputs and .drv files. The first is given
// only the top's path (`kiln build submit` on a machine without the file): it fetches the
// .drv closure from the upstream, builds only the top on its local-builder agent, which
// substitutes the lower half from the upstream with the Guix signatures checked.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { parseUpstreams } from '../../src/cache/upstreams/upstream-list.js';
import { eq } from 'drizzle-orm';
import { builds, derivations } from '../../src/db/schema.js';
import type { Derivation } from '../../src/store/derivation.js';
import { makeDerivation, type MadeDerivation } from '../../src/store/make-derivation.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { cliEnv, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { waitForBuilds } from '../helpers/wait.js';

const STORE = '/gnu/store';
const FINAL = [BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED];

describe('kiln chains: a kiln coordinator as the upstream of another, Guix keys, /gnu/store, local builder', () => {
  let root: string;
  let upper: TestCoordinator;
  let lower: TestCoordinator;
  const agents: AgentProcess[] = [];

  async function agentFor(t: TestCoordinator, name: string): Promise<AgentProcess> {
    const { agent } = await t.admin.createAgent({ name });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    const a = startAgentProcess({ coordinatorUrl: t.coordinator.url, id: agent!.id, password, store: join(root, name), builder: 'local', extraArgs: ['--store-dir', STORE] });
    agents.push(a);
    return a;
  }

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-chain-'));
    lower = await startTestCoordinator('pglite', { storeDir: STORE });
    const guixKey = await (await fetch(`${lower.coordinator.url}/signing-key.pub`)).text();
    upper = await startTestCoordinator('pglite', {
      storeDir: STORE,
      // Only the Guix key: the Nix signatures the lower one also writes are not what is trusted here.
      upstreams: parseUpstreams([{ url: lower.coordinator.url, publicKeys: [guixKey], for: 'both' }]),
      upstreamPollMs: 200,
    });
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await upper?.stop();
    await lower?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('the first farm fetches the .drv closure by path and builds only the top; the lower half comes from the second', async () => {
    const nonce = randomUUID().slice(0, 8);
    const known = new Map<string, Derivation>();
    const make = (name: string, script: string, deps: MadeDerivation[]) => {
      const env: Record<string, string> = { PATH: '/usr/bin:/bin' };
      deps.forEach((d, i) => (env[`dep${i}`] = d.outputs.get('out')!));
      const d = makeDerivation(
        { name: `${name}-${nonce}`, system: 'x86_64-linux', builder: '/bin/sh', args: ['-c', script], env, inputDrvs: new Map(deps.map((x) => [x.path, ['out']])) },
        STORE,
        known,
      );
      known.set(d.path, d.drv);
      return d;
    };
    const leaf = make('leaf', `echo leaf-${nonce} > $out`, []);
    const mid = make('mid', 'cat $dep0 > $out; echo mid $dep0 >> $out', [leaf]);
    const top = make('top', 'cat $dep0 > $out; echo top $dep0 >> $out', [mid]);
    const texts = (ds: MadeDerivation[]) => ds.map((d) => ({ path: d.path, text: Buffer.from(d.text) }));

    // The lower farm builds the lower half, and holds the top's .drv (its build waits for
    // a tag no agent has: only the file matters here).
    const lowerAgent = await agentFor(lower, 'lower-agent');
    const { build: midBuild } = await lower.admin.submitBuild({ derivationPath: mid.path, derivations: texts([mid, leaf]) });
    await lower.admin.submitBuild({ derivationPath: top.path, derivations: texts([top, mid, leaf]), tags: [{ key: 'where', value: 'nowhere' }] });
    const midState = async () => (await lower.admin.getBuild({ id: midBuild!.id })).build!.state;
    await waitForBuilds(lower.coordinator, async () => FINAL.includes(await midState()), 60_000, async () => `mid is ${BuildState[await midState()]}\n${lowerAgent.output().slice(-3000)}`);
    expect(BuildState[await midState()]).toBe('SUCCEEDED');

    // The upper farm gets the top by path alone: this machine has no /gnu/store file of it.
    expect(existsSync(top.path)).toBe(false);
    const upperAgent = await agentFor(upper, 'upper-agent');
    const submitted = await runCli(['build', 'submit', top.path, '--json'], cliEnv(upper));
    expect(submitted.stderr).toBe('');
    expect(submitted.code).toBe(0);
    const id = (JSON.parse(submitted.stdout) as { build: { id: string } }[])[0]!.build.id;
    const state = async () => (await upper.admin.getBuild({ id })).build!.state;
    await waitForBuilds(upper.coordinator, async () => FINAL.includes(await state()), 60_000, async () => `top is ${BuildState[await state()]}\n${upperAgent.output().slice(-3000)}`);
    expect(BuildState[await state()]).toBe('SUCCEEDED');

    // Only the top was built by the upper farm; its agent has the lower half from the lower farm.
    const made = await upper.coordinator.database.db.select({ drv: builds.derivationPath }).from(builds);
    expect(made.map((b) => b.drv)).toEqual([top.path]);
    const midOut = mid.outputs.get('out')!;
    const leafOut = leaf.outputs.get('out')!;
    expect(readFileSync(join(root, 'upper-agent', midOut), 'utf8')).toBe(`leaf-${nonce}\nmid ${leafOut}\n`);
    expect(readFileSync(join(root, 'upper-agent', top.outputs.get('out')!), 'utf8')).toBe(`leaf-${nonce}\nmid ${leafOut}\ntop ${midOut}\n`);
  }, 150_000);

  test('a path no upstream has is refused with the reason, and nothing is stored', async () => {
    const missing = `${STORE}/${'1'.repeat(32)}-absent.drv`;
    const res = await runCli(['build', 'submit', missing], cliEnv(upper));
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`derivation ${missing} is neither known to the coordinator nor to be had from an upstream`);
    expect(res.stderr).toContain('no narinfo (404)');
    expect(await upper.coordinator.database.db.select().from(derivations).where(eq(derivations.path, missing))).toEqual([]);
  });
});
