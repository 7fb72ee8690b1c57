// The build loop end to end with the local builder (no Nix on the agents' side): two
// `kiln agent run --builder local` processes, each with its own store root, so that each
// fetches from the coordinator's cache what the other built; then an empty Nix store
// substitutes every output. And an agent's time limits, enforced on a real build.
import { describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { and, eq } from 'drizzle-orm';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { buildAttempts } from '../../src/db/schema.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { startAgentProcess } from '../helpers/agent-process.js';
import { agentLogs, buildDagAndSubstitute, useBuildFarm } from '../helpers/build-loop.js';
import { closureOf, shDrv } from '../helpers/derivations.js';
import { instantiate } from '../helpers/nix.js';
import { waitForBuilds } from '../helpers/wait.js';

describe('the build loop with the local builder', () => {
  const farm = useBuildFarm('local');

  test('builds a DAG across two agents that fetch each other\'s outputs, and an empty Nix store substitutes every output', async () => {
    const { root } = farm();
    const outputs = await buildDagAndSubstitute(farm());
    // Agent a built leaf and top; b built a, which needs leaf, and top needs a: each
    // store holds, valid, an output only the other agent built.
    const validIn = (agent: string, path: string) => {
      const entry = join(root, agent, 'nix', 'var', 'kiln', 'valid', `${parseStorePath(path).hashPart}.json`);
      return existsSync(join(root, agent, path)) && existsSync(entry) && (JSON.parse(readFileSync(entry, 'utf8')) as { path: string }).path === path;
    };
    expect(validIn('b', outputs.leaf![0]!)).toBe(true);
    expect(validIn('a', outputs.a![0]!)).toBe(true);
    // Outputs went into the roots, not into the machine's /nix/store.
    expect(existsSync(outputs.top![0]!)).toBe(false);
  }, 300_000);

  test('stops a build that runs past the agent\'s time limit, or is silent for longer than it allows', async () => {
    const { t, root, agents } = farm();
    const { agent } = await t.admin.createAgent({ name: 'agent-limits' });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    const limited = startAgentProcess({
      coordinatorUrl: t.coordinator.url,
      id: agent!.id,
      password,
      store: join(root, 'limits'),
      builder: 'local',
      extraArgs: ['--tag', 'limits=short', '--timeout', '4', '--max-silent-time', '2'],
    });
    agents.push(limited); // stopped with the others

    const nonce = randomUUID().slice(0, 8);
    const [chatty, silent] = instantiate(`[
      (${shDrv(`chatty-${nonce}`, 'while true; do echo tick; sleep 0.5; done')})
      (${shDrv(`silent-${nonce}`, 'echo started; sleep 60; echo never > $out')})
    ]`);
    const ids: string[] = [];
    for (const drv of [chatty!, silent!]) {
      const { build } = await t.admin.submitBuild({ derivationPath: drv, derivations: closureOf(drv), tags: [{ key: 'limits', value: 'short' }] });
      ids.push(build!.id);
    }
    const started = Date.now();
    const states = async () => Promise.all(ids.map(async (id) => (await t.admin.getBuild({ id })).build!.state));
    await waitForBuilds(
      t.coordinator,
      async () => (await states()).every((s) => s === BuildState.FAILED),
      60_000,
      async () => `states ${JSON.stringify(await states())}\n${agentLogs([limited])}`,
    );
    // Well before the 60 s the silent build would have slept.
    expect(Date.now() - started).toBeLessThan(30_000);

    const attempt = async (id: string) =>
      (await t.coordinator.database.db.select().from(buildAttempts).where(and(eq(buildAttempts.buildId, id), eq(buildAttempts.attempt, 1))))[0]!;
    const [chattyAttempt, silentAttempt] = await Promise.all(ids.map(attempt));
    expect([chattyAttempt!.outcome, chattyAttempt!.message]).toEqual(['timeout', `${chatty} timed out after 4 seconds`]);
    expect([silentAttempt!.outcome, silentAttempt!.message]).toEqual(['silent-timeout', `${silent} timed out after 2 seconds of silence`]);
    // What they printed before they were stopped is in their logs.
    const log = async (drv: string) => (await fetch(`${t.coordinator.url}/log/${drv.slice('/nix/store/'.length)}`)).text();
    expect(await log(chatty!)).toContain('tick\ntick\n');
    expect(await log(silent!)).toBe('started\n');
  }, 120_000);
});
