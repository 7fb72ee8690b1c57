// The README's farm of one, followed as written, with the machine's real Nix: the
// coordinator with its local agent (what scripts/start.sh runs once kiln is installed),
// the README's `kiln build submit "$drv" --priority 10 --tag project=demo`, which waits
// and says why until the local agent carries the tag, then `nix copy --from` the
// coordinator on the same machine, as the same user. And two agents on one machine, one
// of whose Nix asked kiln's cache for a path before the other built it.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KILN_BIN, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { instantiate, nix, NIX_CONFIG } from '../helpers/nix.js';
import { shDrv } from '../helpers/derivations.js';
import { freePort } from '../helpers/postgres-server.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { waitForBuilds, waitUntil } from '../helpers/wait.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { closureOf } from '../helpers/derivations.js';

const WAIT_MS = 120_000;

/** The user's environment: a home of its own, and the machine's Nix settings (what its nix.conf would say). */
function userEnv(home: string, url: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, NIX_CONFIG, KILN_COORDINATOR: url };
  for (const k of ['XDG_CACHE_HOME', 'XDG_DATA_HOME', 'XDG_STATE_HOME', 'KILN_DATA_DIR', 'KILN_ADMIN_TOKEN']) delete env[k];
  return env;
}

/** `kiln coordinator --local-agent …` as scripts/start.sh ends, until it says it listens and its agent runs. */
async function startFarmOfOne(env: NodeJS.ProcessEnv, listen: string, extra: string[] = []): Promise<{ child: ChildProcess; log: () => string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [KILN_BIN, 'coordinator', '--local-agent', '--listen', listen, ...extra], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the farm of one did not start:\n${log}`)), 60_000);
    child.stderr!.on('data', (c: Buffer) => {
      log += c.toString();
      if (log.includes('local agent running')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => reject(new Error(`the coordinator exited:\n${log}`)));
  });
  return {
    child,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Asks `kiln build show --json` until `done`, bounded: the coordinator is another process
 * here (as the README runs it), with no event bus for the test to wait on.
 */
async function showUntil(env: NodeJS.ProcessEnv, id: string, done: (b: { state: string; waitReason?: { text: string } }) => boolean): Promise<{ state: string; waitReason?: { text: string } }> {
  let b: { state: string; waitReason?: { text: string } } = { state: 'unknown' };
  await waitUntil(
    async () => {
      const shown = await runCli(['build', 'show', id, '--json'], env);
      if (shown.code !== 0) throw new Error(`kiln build show failed: ${shown.stderr}`);
      b = JSON.parse(shown.stdout) as typeof b;
      return done(b);
    },
    WAIT_MS,
    () => `build ${id} is still ${b.state}: ${b.waitReason?.text ?? ''}`,
    250,
  );
  return b;
}

describe('the README farm of one, with the machine\'s Nix', () => {
  let home: string;
  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), 'kiln-home-'));
  });
  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
  });

  test('a build tagged project=demo says why it waits, runs once the local agent carries the tag, and `nix copy --from` substitutes it on the same machine', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const env = userEnv(home, url);
    const nonce = randomUUID().slice(0, 8);
    // drv=$(nix-instantiate …): a derivation with an input, so the closure is built.
    const [drv] = instantiate(`let dep = ${shDrv(`farm-dep-${nonce}`, 'echo dep > $out')}; in ${shDrv(`farm-top-${nonce}`, 'cat ${dep} > $out; echo top >> $out')}`);
    const out = nix('nix-store', ['--query', '--outputs', drv!]).toString().trim();
    const listen = url.replace('http://', '');

    let farm = await startFarmOfOne(env, listen);
    let id: string;
    try {
      const submitted = await runCli(['build', 'submit', drv!, '--priority', '10', '--tag', 'project=demo'], env);
      expect(submitted).toMatchObject({ code: 0 });
      id = submitted.stdout.trim();
      // The top waits for its input; the input's build (tagged like it) for an agent with the tag.
      const top = JSON.parse((await runCli(['build', 'show', id, '--json'], env)).stdout) as { waitReason: { text: string } };
      expect(top.waitReason.text).toMatch(/^waiting for 1 input path not in the cache yet: .*-farm-dep-.* \(build [0-9a-f-]{36} makes it\); no upstream cache was asked$/);
      const depId = /\(build ([0-9a-f-]{36}) makes it\)/.exec(top.waitReason.text)![1]!;
      const shown = await runCli(['build', 'show', depId], env);
      expect(shown.stdout).toMatch(/waiting +no agent connected to this coordinator for x86_64-linux offers tag project=demo \(an agent started with --tag project=demo would take it\)/);
    } finally {
      await farm.stop();
    }

    // The README's way out: start the farm of one with the tag on its local agent.
    farm = await startFarmOfOne(env, listen, ['--local-agent-tag', 'project=demo']);
    try {
      const done = await showUntil(env, id, (b) => b.state === 'BUILD_STATE_SUCCEEDED' || b.state === 'BUILD_STATE_FAILED');
      expect(done.state).toBe('BUILD_STATE_SUCCEEDED');
      // The local agent's Nix kept its narinfo lookups in its own cache, not the user's.
      expect(existsSync(join(home, '.local/share/kiln/local-agent'))).toBe(true);
      expect(existsSync(join(home, '.cache/nix/binary-cache-v6.sqlite'))).toBe(false);

      // Substituting on the same machine, as the same user: the output leaves the store
      // (the local agent built it there), and `nix copy --from` the coordinator brings it back.
      const key = (await runCli(['cache', 'public-key'], env)).stdout.trim();
      nix('nix-store', ['--delete', out], { env });
      const copied = spawnText('nix', ['copy', '--from', url, '--option', 'trusted-public-keys', key, out], env);
      expect(await copied).toMatchObject({ code: 0 });
      expect(nix('cat', [out]).toString()).toBe('dep\ntop\n');
    } finally {
      await farm.stop();
    }
  }, 300_000);
});

describe('two agents on one machine', () => {
  let t: TestCoordinator;
  let dir: string;
  const agents: AgentProcess[] = [];
  beforeAll(async () => {
    t = await startTestCoordinator('pglite');
    dir = mkdtempSync(join(tmpdir(), 'kiln-two-'));
  });
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startAgent(name: string, tag: string): Promise<AgentProcess> {
    const { agent } = await t.admin.createAgent({ name, tags: [{ key: 'who', value: tag }] });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    const a = startAgentProcess({ coordinatorUrl: t.coordinator.url, id: agent!.id, password, store: join(dir, name) });
    agents.push(a);
    return a;
  }

  test('an agent whose Nix asked for a path before another agent built it fetches it, with no setup failure', async () => {
    const nonce = randomUUID().slice(0, 8);
    const [dep] = instantiate(shDrv(`early-dep-${nonce}`, 'echo dep > $out'));
    const [top] = instantiate(`let dep = ${shDrv(`early-dep-${nonce}`, 'echo dep > $out')}; in ${shDrv(`early-top-${nonce}`, 'cat ${dep} > $out')}`);
    const depOut = nix('nix-store', ['--query', '--outputs', dep!]).toString().trim();
    const { build: depBuild } = await t.admin.submitBuild({ derivationPath: dep!, derivations: closureOf(dep!), tags: [{ key: 'who', value: 'b' }] });

    // Agent a's Nix asks the cache for the input before it exists, in a's own cache
    // directory, and remembers the miss for an hour (Nix's default) as its dry runs did.
    const cacheA = join(dir, 'a-state', 'cache');
    const asked = await spawnText('nix', ['path-info', '--store', t.coordinator.url, '--option', 'narinfo-cache-negative-ttl', '3600', depOut], {
      ...process.env, NIX_CONFIG, XDG_CACHE_HOME: cacheA,
    });
    expect(asked.code).not.toBe(0);
    expect(existsSync(join(cacheA, 'nix', 'binary-cache-v6.sqlite'))).toBe(true);

    const a = await startAgent('a', 'a');
    await startAgent('b', 'b');
    const stateOf = async (id: string) => (await t.admin.getBuild({ id })).build!;
    await waitForBuilds(t.coordinator, async () => (await stateOf(depBuild!.id)).state === BuildState.SUCCEEDED, WAIT_MS, async () => `dep is ${BuildState[(await stateOf(depBuild!.id)).state]}`);

    // The top goes to a, which fetches the input b built: its remembered miss is not acted on.
    const { build: topBuild } = await t.admin.submitBuild({ derivationPath: top!, derivations: closureOf(top!), tags: [{ key: 'who', value: 'a' }] });
    const final = () => stateOf(topBuild!.id);
    await waitForBuilds(t.coordinator, async () => [BuildState.SUCCEEDED, BuildState.FAILED].includes((await final()).state), WAIT_MS, async () => `top is ${BuildState[(await final()).state]}:\n${a.output().slice(-3000)}`);
    const built = await final();
    expect(built.state).toBe(BuildState.SUCCEEDED);
    expect(built.attempts.map((x) => x.outcome)).toEqual(['success']);
  }, 300_000);
});

function spawnText(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('exit', (code) => resolve({ code, output }));
  });
}
