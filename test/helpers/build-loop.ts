// The build loop end to end, for any builder: a coordinator, two `kiln agent run`
// processes each with its own store, a DAG of real derivations pinned so that each agent
// needs outputs the other built (from the cache); then a third, empty Nix store
// substitutes every output from kiln's cache with signatures required.
import { afterAll, beforeAll, expect } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inArray } from 'drizzle-orm';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { buildAttempts, storePaths } from '../../src/db/schema.js';
import { startAgentProcess, type AgentProcess, type BuilderName } from './agent-process.js';
import { startTestCoordinator, type TestCoordinator } from './coordinator.js';
import { closureOf, shDrv } from './derivations.js';
import { instantiate, NIX_CONFIG } from './nix.js';
import { waitForBuilds } from './wait.js';

const FINAL = [BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED];
const run = promisify(execFile);

export interface BuildFarm {
  t: TestCoordinator;
  /** A temporary directory for the agents' stores (root/a, root/b) and anything else. */
  root: string;
  builder: BuilderName;
  /** Agent a carries the tag side=a, agent b side=b. */
  agents: AgentProcess[];
}

/** A coordinator and two agents with `builder`, for the tests of one describe block. */
export function useBuildFarm(builder: BuilderName): () => BuildFarm {
  let farm: BuildFarm | undefined;
  beforeAll(async () => {
    // Every build of the DAG is submitted on its own, pinned to its side. Builds made for
    // the top's inputs would duplicate them with the top's tag: a second build of the leaf
    // on the agent whose later builds refer to its output cannot delete that output there,
    // and no other agent may take it.
    const t = await startTestCoordinator('pglite', { submitMissingInputs: false });
    const root = mkdtempSync(join(tmpdir(), `kiln-e2e-${builder}-`));
    farm = { t, root, builder, agents: [] };
    for (const name of ['a', 'b']) {
      const { agent } = await t.admin.createAgent({ name: `agent-${name}` });
      const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
      farm.agents.push(
        startAgentProcess({ coordinatorUrl: t.coordinator.url, id: agent!.id, password, store: join(root, name), builder, extraArgs: ['--tag', `side=${name}`] }),
      );
    }
  });
  afterAll(async () => {
    if (!farm) return;
    await Promise.all(farm.agents.map((a) => a.stop()));
    await farm.t.stop();
    rmSync(farm.root, { recursive: true, force: true });
  });
  return () => {
    if (!farm) throw new Error('the build farm is not started');
    return farm;
  };
}

/** What the agents logged last, for a failure message. */
export function agentLogs(agents: AgentProcess[]): string {
  return agents.map((a, i) => `--- agent ${i} ---\n${a.output().slice(-3000)}`).join('\n');
}

/**
 * Submits the DAG (the top first, so that it waits for inputs submitted after it) and
 * checks every build's final state, the failing build's log, and that an empty Nix store
 * substitutes every output. Returns the outputs' paths by build name.
 */
export async function buildDagAndSubstitute(farm: BuildFarm): Promise<Record<string, string[]>> {
  const { t } = farm;
  const nonce = randomUUID().slice(0, 8);
  const names = ['leaf', 'a', 'b', 'multi', 'top', 'bad'] as const;
  const paths = instantiate(`let
    leaf = ${shDrv(`leaf-${nonce}`, `echo leaf-${nonce} > $out`)};
    a = ${shDrv(`a-${nonce}`, 'cat ${leaf} > $out; echo a ${leaf} >> $out')};
    b = ${shDrv(`b-${nonce}`, 'cat ${leaf} > $out; echo b >> $out')};
    multi = ${shDrv(`multi-${nonce}`, 'echo dev > $dev; echo out > $out', 'outputs = [ "out" "dev" ];')};
    top = ${shDrv(`top-${nonce}`, 'cat ${a} ${b} ${multi.dev} > $out')};
    bad = ${shDrv(`bad-${nonce}`, 'echo this build fails on purpose; exit 3')};
  in [ leaf a b multi top bad ]`);
  const drv = Object.fromEntries(names.map((n, i) => [n, paths[i]!])) as Record<(typeof names)[number], string>;
  // Which agent builds what: each needs something the other built (bad goes to either).
  const side: Partial<Record<(typeof names)[number], string>> = { leaf: 'a', a: 'b', b: 'a', multi: 'b', top: 'a' };

  const ids: Record<string, string> = {};
  for (const n of ['top', 'leaf', 'a', 'b', 'multi', 'bad'] as const) {
    const tags = side[n] ? [{ key: 'side', value: side[n] }] : [];
    const { build } = await t.admin.submitBuild({ derivationPath: drv[n], derivations: closureOf(drv[n]), tags });
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
    async () => `states ${JSON.stringify(await states())}\n${agentLogs(farm.agents)}`,
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

  const outputs: Record<string, string[]> = {};
  for (const n of ['leaf', 'a', 'b', 'multi', 'top'] as const) {
    const { build } = await t.admin.getBuild({ id: ids[n]! });
    outputs[n] = build!.outputs.map((o) => o.path);
  }
  // What each output refers to, as its builder found it: a names leaf, and so does top, which copies a.
  const leafOut = outputs.leaf![0]!;
  const rows = await t.coordinator.database.db.select().from(storePaths).where(inArray(storePaths.path, Object.values(outputs).flat()));
  const references = Object.fromEntries(rows.map((r) => [r.path, r.references]));
  expect(Object.fromEntries(Object.entries(outputs).flatMap(([n, ps]) => ps.map((p, i) => [`${n}.${i}`, references[p]])))).toEqual({
    'leaf.0': [],
    'a.0': [leafOut],
    'b.0': [],
    'multi.0': [],
    'multi.1': [],
    'top.0': [leafOut],
  });

  const clientStore = await substituteFromCache(t, join(farm.root, 'client'), Object.values(outputs).flat());
  expect(readFileSync(join(clientStore, outputs.top![0]!), 'utf8')).toBe(`leaf-${nonce}\na ${leafOut}\nleaf-${nonce}\nb\ndev\n`);
  return outputs;
}

/**
 * An empty Nix store at `clientStore` substitutes `outputs` from the coordinator's cache
 * (or a mirror of it at `from`) with signatures required, and every NAR hash Nix computes
 * is the one the coordinator recorded. Returns the store's directory.
 */
export async function substituteFromCache(t: TestCoordinator, clientStore: string, outputs: string[], from = t.coordinator.url): Promise<string> {
  const clientConfig = [NIX_CONFIG.replace('substituters =', `substituters = ${from}`), `trusted-public-keys = ${t.coordinator.nixPublicKey}`, 'require-sigs = true'].join('\n');
  // Asynchronously: the coordinator serving these downloads runs in this process.
  const env = { ...process.env, NIX_CONFIG: clientConfig, XDG_CACHE_HOME: `${clientStore}-cache` };
  await run('nix-store', ['--store', clientStore, '--realise', ...outputs], { env });
  const recorded = await t.coordinator.database.db.select().from(storePaths).where(inArray(storePaths.path, outputs));
  expect(recorded).toHaveLength(outputs.length);
  for (const row of recorded) {
    const hash = (await run('nix-store', ['--store', clientStore, '--query', '--hash', row.path], { env })).stdout.trim();
    expect(hash).toBe(row.narHash);
  }
  return clientStore;
}
