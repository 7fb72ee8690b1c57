// Input sources end to end: `kiln build submit` (the real CLI process) uploads the
// sources a derivation's builder needs, a `kiln agent run` process with the nix builder
// fetches them from the coordinator's cache and builds, and an empty Nix store then
// substitutes the output and the sources with signatures required.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { buildAttempts, storePaths } from '../../src/db/schema.js';
import { startNewAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { cliEnv, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { sourcedDrv } from '../helpers/derivations.js';
import { NIX_CONFIG } from '../helpers/nix.js';
import { waitForBuilds } from '../helpers/wait.js';

const run = promisify(execFile);
const FINAL = [BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED];

describe('input sources with the nix builder', () => {
  let t: TestCoordinator;
  let root: string;
  let agent: AgentProcess | undefined;
  let sourced: ReturnType<typeof sourcedDrv>;
  const nonce = `${Date.now()}`;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-e2e-sources-'));
    // nix-instantiate runs synchronously: before the coordinator serves.
    sourced = sourcedDrv(nonce, mkdtempSync(join(root, 'expr-')));
    t = await startTestCoordinator('pglite');
    agent = await startNewAgentProcess(t, 'sources', { store: join(root, 'agent') });
  });

  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('kiln build submit uploads the sources; the agent builds from them; an empty store substitutes output and sources', async () => {
    const submitted = await runCli(['build', 'submit', '--json', sourced.drv], cliEnv(t));
    expect(submitted.stderr).toBe('');
    expect(submitted.code).toBe(0);
    const [{ build }] = JSON.parse(submitted.stdout) as [{ build: { id: string } }];

    const state = async () => (await t.admin.getBuild({ id: build.id })).build!.state;
    await waitForBuilds(
      t.coordinator,
      async () => FINAL.includes(await state()),
      120_000,
      async () => {
        const attempts = await t.coordinator.database.db.select().from(buildAttempts).where(eq(buildAttempts.buildId, build.id));
        return `build ${build.id} is ${BuildState[await state()]}; last attempt: ${attempts.at(-2)?.message.slice(-1500)}\n--- agent ---\n${agent!.output().slice(-1500)}`;
      },
    );
    if ((await state()) !== BuildState.SUCCEEDED) {
      const attempts = await t.coordinator.database.db.select().from(buildAttempts).where(eq(buildAttempts.buildId, build.id));
      console.log(attempts.map((a) => `${a.outcome}: ${a.message.slice(-1500)}`).join('\n\n'));
    }
    expect(await state()).toBe(BuildState.SUCCEEDED);
    // Every source came from the CLI, the one the wrapper refers to included.
    for (const path of [sourced.wrapper, sourced.script, sourced.data]) {
      const [row] = await t.coordinator.database.db.select().from(storePaths).where(eq(storePaths.path, path));
      expect(row?.buildId).toBeNull();
    }

    const { build: done } = await t.admin.getBuild({ id: build.id });
    const output = done!.outputs[0]!.path;
    const clientStore = join(root, 'client');
    const clientConfig = [
      NIX_CONFIG.replace('substituters =', `substituters = ${t.coordinator.url}`),
      `trusted-public-keys = ${t.coordinator.nixPublicKey}`,
      'require-sigs = true',
    ].join('\n');
    // Asynchronously: the coordinator serving these downloads runs in this process.
    const env = { ...process.env, NIX_CONFIG: clientConfig, XDG_CACHE_HOME: join(root, 'client-cache') };
    await run('nix-store', ['--store', clientStore, '--realise', output, sourced.wrapper], { env });
    expect(readFileSync(join(clientStore, output), 'utf8')).toBe(`sourced-${nonce}\nscripted\n`);
    expect(readFileSync(join(clientStore, sourced.script), 'utf8')).toBe(readFileSync(sourced.script, 'utf8'));

    // Submitting again uploads nothing more and is not refused.
    const narDir = join(t.dataDir, 'nars', 'nar');
    const stored = readdirSync(narDir).sort();
    const again = await runCli(['build', 'submit', '--ignore-if-output-exists', sourced.drv], cliEnv(t));
    expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: '' });
    expect(again.stdout.trim()).toBe(`${build.id} (existing build)`);
    expect(readdirSync(narDir).sort()).toEqual(stored);
  }, 180_000);
});
