// An agent that dies mid-build: its build waits out the lease, goes back to the queue,
// and the other agent builds it.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { buildAttempts } from '../../src/db/schema.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { closureOf, shDrv } from '../helpers/derivations.js';
import { instantiate } from '../helpers/nix.js';
import { waitForBuilds } from '../helpers/wait.js';

describe('an agent killed mid-build', () => {
  let t: TestCoordinator;
  let root: string;
  const agents: { id: string; process: AgentProcess }[] = [];

  beforeAll(async () => {
    t = await startTestCoordinator('postgres', { leaseMs: 1_000, dispatchIntervalMs: 250 });
    root = mkdtempSync(join(tmpdir(), 'kiln-lost-'));
    for (const name of ['first', 'second']) {
      const { agent } = await t.admin.createAgent({ name });
      const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
      agents.push({ id: agent!.id, process: startAgentProcess({ coordinatorUrl: t.coordinator.url, id: agent!.id, password, store: join(root, name), maxParallel: 1 }) });
    }
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.process.stop()));
    await t?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('has its build returned to the queue after the lease and built by the other agent', async () => {
    const [drv] = instantiate(shDrv(`slow-${randomUUID().slice(0, 8)}`, 'sleep 3; echo done > $out'));
    const { build } = await t.admin.submitBuild({ derivationPath: drv!, derivations: closureOf(drv!) });
    const id = build!.id;
    const current = async () => (await t.admin.getBuild({ id })).build!;

    await waitForBuilds(t.coordinator, async () => (await current()).state === BuildState.STARTED, 60_000, async () => `state ${(await current()).state}`);
    const first = (await current()).agentId;
    const victim = agents.find((a) => a.id === first)!;
    await victim.process.kill();

    await waitForBuilds(
      t.coordinator,
      async () => (await current()).state === BuildState.SUCCEEDED,
      90_000,
      async () => `state ${(await current()).state}\n${agents.map((a) => a.process.output().slice(-2000)).join('\n---\n')}`,
    );
    const done = await current();
    expect(done.agentId).not.toBe(first);
    const attempts = await t.coordinator.database.db.select().from(buildAttempts).where(eq(buildAttempts.buildId, id)).orderBy(buildAttempts.attempt);
    expect(attempts.map((a) => [a.agentId, a.outcome])).toEqual([
      [first, 'agent-lost'],
      [done.agentId, 'success'],
    ]);
  }, 180_000);
});
