// The build loop end to end: a coordinator, two `kiln agent run` processes with the nix
// builder (each with its own chroot store), a DAG of real derivations; then a third,
// empty Nix store substitutes every output from kiln's cache with signatures required.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inArray } from 'drizzle-orm';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { buildAttempts, storePaths } from '../../src/db/schema.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { closureOf, shDrv } from '../helpers/derivations.js';
import { instantiate, NIX_CONFIG } from '../helpers/nix.js';
import { waitForBuilds } from '../helpers/wait.js';

const FINAL = [BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED];

describe('the build loop with the nix builder', () => {
  let t: TestCoordinator;
  let root: string;
  const agents: AgentProcess[] = [];

  beforeAll(async () => {
    t = await startTestCoordinator('pglite');
    root = mkdtempSync(join(tmpdir(), 'kiln-e2e-'));
    for (const name of ['a', 'b']) {
      const { agent } = await t.admin.createAgent({ name: `agent-${name}` });
      const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
      agents.push(startAgentProcess({ coordinatorUrl: t.coordinator.url, id: agent!.id, password, store: join(root, name) }));
    }
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await t?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('builds a DAG across two agents, and an empty store substitutes every output with signatures required', async () => {
    const nonce = randomUUID().slice(0, 8);
    const names = ['leaf', 'a', 'b', 'multi', 'top', 'bad'] as const;
    const paths = instantiate(`let
      leaf = ${shDrv(`leaf-${nonce}`, `echo leaf-${nonce} > $out`)};
      a = ${shDrv(`a-${nonce}`, 'cat ${leaf} > $out; echo a >> $out')};
      b = ${shDrv(`b-${nonce}`, 'cat ${leaf} > $out; echo b >> $out')};
      multi = ${shDrv(`multi-${nonce}`, 'echo dev > $dev; echo out > $out', 'outputs = [ "out" "dev" ];')};
      top = ${shDrv(`top-${nonce}`, 'cat ${a} ${b} ${multi.dev} > $out')};
      bad = ${shDrv(`bad-${nonce}`, 'echo this build fails on purpose; exit 3')};
    in [ leaf a b multi top bad ]`);
    const drv = Object.fromEntries(names.map((n, i) => [n, paths[i]!])) as Record<(typeof names)[number], string>;

    // Submit the top first: it must wait for its inputs, which are submitted after it.
    const ids: Record<string, string> = {};
    for (const n of ['top', 'leaf', 'a', 'b', 'multi', 'bad'] as const) {
      const { build } = await t.admin.submitBuild({ derivationPath: drv[n], derivations: closureOf(drv[n]) });
      ids[n] = build!.id;
    }

    const states = async () => {
      const out: Record<string, BuildState> = {};
      for (const n of names) out[n] = (await t.admin.getBuild({ id: ids[n]! })).build!.state;
      return out;
    };
    await waitForBuilds(
      t.coordinator,
      async () => Object.values(await states()).every((s) => FINAL.includes(s)),
      200_000,
      async () => `states ${JSON.stringify(await states())}\n--- agent a ---\n${agents[0]!.output().slice(-3000)}\n--- agent b ---\n${agents[1]!.output().slice(-3000)}`,
    );
    const final = await states();
    if (final.top !== BuildState.SUCCEEDED) {
      const attempts = await t.coordinator.database.db.select().from(buildAttempts);
      console.log(attempts.filter((a) => a.outcome !== 'success').map((a) => `${a.buildId} ${a.outcome}: ${a.message.slice(-700)}`).join('\n\n'), ids);
    }
    expect(final).toEqual({
      leaf: BuildState.SUCCEEDED,
      a: BuildState.SUCCEEDED,
      b: BuildState.SUCCEEDED,
      multi: BuildState.SUCCEEDED,
      top: BuildState.SUCCEEDED,
      bad: BuildState.FAILED,
    });

    // The failing build's log is served.
    const log = await fetch(`${t.coordinator.url}/log/${drv.bad.slice('/nix/store/'.length)}`);
    expect(log.status).toBe(200);
    expect(await log.text()).toContain('this build fails on purpose');

    // A third, empty store substitutes every output from kiln's cache, signatures required.
    const outputs: string[] = [];
    for (const n of ['leaf', 'a', 'b', 'multi', 'top'] as const) {
      const { build } = await t.admin.getBuild({ id: ids[n]! });
      outputs.push(...build!.outputs.map((o) => o.path));
    }
    const clientStore = join(root, 'client');
    const clientConfig = [NIX_CONFIG.replace('substituters =', `substituters = ${t.coordinator.url}`), `trusted-public-keys = ${t.coordinator.nixPublicKey}`, 'require-sigs = true'].join('\n');
    // Asynchronously: the coordinator serving these downloads runs in this process.
    const run = promisify(execFile);
    const env = { ...process.env, NIX_CONFIG: clientConfig, XDG_CACHE_HOME: join(root, 'client-cache') };
    await run('nix-store', ['--store', clientStore, '--realise', ...outputs], { env });
    const top = outputs[outputs.length - 1]!;
    expect(readFileSync(join(clientStore, top), 'utf8')).toBe(`leaf-${nonce}\na\nleaf-${nonce}\nb\ndev\n`);
    const recorded = await t.coordinator.database.db.select().from(storePaths).where(inArray(storePaths.path, outputs));
    expect(recorded).toHaveLength(outputs.length);
    for (const row of recorded) {
      const hash = (await run('nix-store', ['--store', clientStore, '--query', '--hash', row.path], { env })).stdout.trim();
      expect(hash).toBe(row.narHash);
    }
  }, 300_000);
});
