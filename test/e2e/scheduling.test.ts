// Scheduling through the real server and a real agent process (the local builder), on
// both databases: a failed attempt retried after its backoff, missing inputs built first,
// time limits, cancel of a running build, and drain.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { chain, closureOf, shDrv } from '../helpers/derivations.js';
import { instantiate } from '../helpers/nix.js';
import { waitForBuilds } from '../helpers/wait.js';

const BACKOFF_MS = 400;

/** Resolves when `path` exists (watching its directory), or rejects after the bound. */
function waitForFile(path: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const dir = join(path, '..');
    const watcher = watch(dir, () => {
      if (existsSync(path)) finish();
    });
    const timer = setTimeout(() => finish(new Error(`${path} did not appear within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      watcher.close();
      if (err) reject(err);
      else resolve();
    };
    if (existsSync(path)) finish();
  });
}

/** Resolves when the agent has logged `text`, or rejects after the bound. */
function waitForLog(agent: AgentProcess, text: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!agent.output().includes(text)) return;
      done();
      resolve();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`the agent did not log ${JSON.stringify(text)} within ${timeoutMs} ms:\n${agent.output().slice(-3000)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      agent.child.stdout!.off('data', check);
      agent.child.stderr!.off('data', check);
    };
    agent.child.stdout!.on('data', check);
    agent.child.stderr!.on('data', check);
    check();
  });
}

describe.each(DATABASE_KINDS)('scheduling with a real agent on %s', (kind) => {
  let t: TestCoordinator;
  let root: string;
  let agent: AgentProcess;
  let agentId: string;

  beforeAll(async () => {
    t = await startTestCoordinator(kind, {
      retryPolicy: { farm: { maxAttempts: 2, on: ['failure', 'agent-lost', 'setup-failure'], initialBackoffMs: BACKOFF_MS, maxBackoffMs: BACKOFF_MS }, byTag: [] },
    });
    root = mkdtempSync(join(tmpdir(), `kiln-sched-${kind}-`));
    const created = await t.admin.createAgent({ name: 'scheduling' });
    agentId = created.agent!.id;
    const { password } = await t.admin.createAgentPassword({ agentId });
    agent = startAgentProcess({ coordinatorUrl: t.coordinator.url, id: agentId, password, store: join(root, 'store'), builder: 'local', maxParallel: 2 });
  });

  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const state = async (id: string) => (await t.admin.getBuild({ id })).build!;
  const until = (ids: string[], states: BuildState[], timeoutMs = 60_000) =>
    waitForBuilds(
      t.coordinator,
      async () => (await Promise.all(ids.map(state))).every((b) => states.includes(b.state)),
      timeoutMs,
      async () => `${JSON.stringify(await Promise.all(ids.map(async (id) => (await state(id)).state)))}\n${agent.output().slice(-3000)}`,
    );
  const submit = async (drvPath: string, extra: { timeoutSeconds?: number; maxSilentSeconds?: number } = {}) =>
    (await t.admin.submitBuild({ derivationPath: drvPath, derivations: closureOf(drvPath), ...extra })).build!.id;

  test('a failed attempt is retried after the backoff, and both attempts are kept', async () => {
    const mark = join(root, `first-attempt-${randomUUID()}`);
    const [drv] = instantiate(
      shDrv(`flaky-${randomUUID().slice(0, 8)}`, `if [ -e ${mark} ]; then echo ok > $out; else touch ${mark}; echo first attempt fails; exit 1; fi`),
    );
    const id = await submit(drv!);
    await until([id], [BuildState.SUCCEEDED, BuildState.FAILED]);
    const build = await state(id);
    expect(build.state).toBe(BuildState.SUCCEEDED);
    expect(build.attempts.map((a) => a.outcome)).toEqual(['failure', 'success']);
    const [first, second] = build.attempts;
    const waited = Number(second!.allocatedAt!.seconds - first!.endedAt!.seconds) * 1000 + (second!.allocatedAt!.nanos - first!.endedAt!.nanos) / 1e6;
    expect(waited).toBeGreaterThanOrEqual(BACKOFF_MS - 5);
    expect(first!.message).toContain('first attempt fails');
  }, 90_000);

  test('submitting only the top builds its missing inputs first', async () => {
    const { top, mid, leaf } = chain(`sched-${kind}-${randomUUID().slice(0, 8)}`);
    const id = await submit(top);
    const builds = async () => (await t.admin.listBuilds({})).builds.filter((b) => [top, mid, leaf].includes(b.derivationPath));
    await waitForBuilds(
      t.coordinator,
      async () => (await builds()).length === 3 && (await builds()).every((b) => b.state === BuildState.SUCCEEDED),
      90_000,
      async () => JSON.stringify((await builds()).map((b) => [b.derivationPath, b.state])),
    );
    const [leafBuild, midBuild, topBuild] = await Promise.all([leaf, mid, top].map(async (p) => (await builds()).find((b) => b.derivationPath === p)!));
    expect(topBuild!.id).toBe(id);
    const allocated = async (b: { id: string }) => {
      const a = (await state(b.id)).attempts[0]!.allocatedAt!;
      return Number(a.seconds) * 1e9 + a.nanos;
    };
    expect(await allocated(leafBuild!)).toBeLessThan(await allocated(midBuild!));
    expect(await allocated(midBuild!)).toBeLessThan(await allocated(topBuild!));
  }, 120_000);

  test('a build that runs past its timeout, or is silent past its limit, fails with that kind and is not retried', async () => {
    const nonce = randomUUID().slice(0, 8);
    const [slow, silent] = instantiate(`[
      (${shDrv(`slow-${nonce}`, 'while true; do echo still going; sleep 0.2; done')})
      (${shDrv(`silent-${nonce}`, 'echo one line then nothing; sleep 60')})
    ]`);
    const slowId = await submit(slow!, { timeoutSeconds: 1 });
    const silentId = await submit(silent!, { maxSilentSeconds: 1 });
    await until([slowId, silentId], [BuildState.FAILED, BuildState.SUCCEEDED]);
    expect((await state(slowId)).state).toBe(BuildState.FAILED);
    expect((await state(slowId)).attempts.map((a) => a.outcome)).toEqual(['timeout']);
    expect((await state(silentId)).attempts.map((a) => a.outcome)).toEqual(['silent-timeout']);
  }, 90_000);

  test('canceling a running build stops it on its agent', async () => {
    const pidFile = join(root, `pid-${randomUUID()}`);
    const [drv] = instantiate(shDrv(`forever-${randomUUID().slice(0, 8)}`, `echo $$ > ${pidFile}.tmp; mv ${pidFile}.tmp ${pidFile}; while true; do sleep 0.1; done`));
    const id = await submit(drv!);
    await waitForFile(pidFile, 60_000);
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    const aborted = waitForLog(agent, `"buildId":"${id}"`, 10_000).then(() => waitForLog(agent, 'build aborted', 30_000));
    const { build } = await t.admin.cancelBuild({ id });
    expect(build!.state).toBe(BuildState.CANCELED);
    await aborted;
    // The builder returns only once the build's process group is gone.
    const alive = (() => {
      try {
        process.kill(pid, 0);
        return true;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code !== 'ESRCH';
      }
    })();
    expect(alive).toBe(false);
    expect((await state(id)).state).toBe(BuildState.CANCELED);
  }, 90_000);

  test('a drained agent finishes the build it holds, takes no more, and stops', async () => {
    const go = join(root, `go-${randomUUID()}`);
    const started = join(root, `started-${randomUUID()}`);
    const nonce = randomUUID().slice(0, 8);
    const [held, later] = instantiate(`[
      (${shDrv(`held-${nonce}`, `touch ${started}; while [ ! -e ${go} ]; do sleep 0.1; done; echo done > $out`)})
      (${shDrv(`later-${nonce}`, 'echo later > $out')})
    ]`);
    const heldId = await submit(held!);
    await waitForFile(started, 60_000);
    await t.admin.drainAgent({ agentId });
    await waitForLog(agent, 'draining', 10_000);
    const laterId = await submit(later!);
    const exited = new Promise<number | null>((resolve) => agent.child.once('exit', (code) => resolve(code)));
    writeFileSync(go, '');
    await until([heldId], [BuildState.SUCCEEDED, BuildState.FAILED]);
    expect((await state(heldId)).state).toBe(BuildState.SUCCEEDED);
    expect(await exited).toBe(0);
    const laterBuild = await state(laterId);
    expect(laterBuild.state).toBe(BuildState.SCHEDULED);
    expect(laterBuild.attempts).toEqual([]);
  }, 120_000);
});
