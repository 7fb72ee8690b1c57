// Fixed-output re-checks with the local builder: a fixed-output derivation whose fetch
// script downloads its source from a test HTTP server is built once; a re-check fetches
// it again and passes; after the server's content changes the re-check reports the hash
// mismatch, and with the server down it reports that, each time with the fetcher's
// message, an event and a metric, while the cache keeps serving the output first built.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { Code } from '@connectrpc/connect';
import { createAdminClient } from '../../sdk/typescript/src/index.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { FixedOutputCheckOutcome } from '../../gen/kiln/v1/admin_pb.js';
import { builds, storePaths } from '../../src/db/schema.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { cliEnv, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { closureOf, shDrv, SYSTEM } from '../helpers/derivations.js';
import { instantiate, nix } from '../helpers/nix.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus-text.js';
import { checkServedNar } from '../helpers/served-nar.js';
import { freePort } from '../helpers/upstream-cache.js';
import { waitForBuilds } from '../helpers/wait.js';

const FINAL = [BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED];

/** The source, served at /source on a port that stays the same across restarts. */
class SourceServer {
  content = '';
  requests = 0;
  private server: Server | undefined;
  constructor(readonly port: number) {}
  get url(): string {
    return `http://127.0.0.1:${this.port}/source`;
  }
  start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.requests++;
      if (req.url !== '/source') res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(this.content);
    });
    return new Promise((resolve) => this.server!.listen(this.port, '127.0.0.1', () => resolve()));
  }
  stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

/**
 * A fixed-output derivation (flat sha256 of `content`) whose builder is this Node.js,
 * downloading `url` into $out; a failed fetch says why on stderr, as a fetcher does.
 */
function fetchDerivation(name: string, url: string, content: string): string {
  const script = [
    "const url = process.env.url;",
    "const fail = (why) => { console.error('cannot fetch ' + url + ': ' + why); process.exit(1); };",
    "fetch(url).then(async (r) => {",
    "  if (!r.ok) fail('HTTP ' + r.status);",
    "  require('fs').writeFileSync(process.env.out, Buffer.from(await r.arrayBuffer()));",
    "}, (e) => fail((e.cause && e.cause.code) || e.message));",
  ].join('\n');
  const hash = createHash('sha256').update(content).digest('hex');
  const [drv] = instantiate(`derivation {
    name = "${name}"; system = "${SYSTEM}"; builder = ${JSON.stringify(process.execPath)};
    args = [ "-e" ${JSON.stringify(script)} ];
    url = ${JSON.stringify(url)};
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "${hash}";
  }`);
  return drv!;
}

interface CheckJson {
  buildId: string;
  derivationPath: string;
  outcome: string;
  message: string;
}

describe.each(DATABASE_KINDS)('fixed-output re-checks, local builder (%s)', (kind) => {
  let root: string;
  let source: SourceServer;
  let t: TestCoordinator;
  let agent: AgentProcess;
  let drv: string;
  let output: string;
  let firstBuild: string;
  let served: { narHash: string; narSize: number };
  const nonce = randomUUID().slice(0, 8);

  const fodCheck = async (args: string[] = []) => {
    const r = await runCli(['qa', 'fod-check', '--wait', '--json', ...args], cliEnv(t));
    expect(r.stderr).toBe('');
    return { code: r.code, ...(JSON.parse(r.stdout) as { checks: CheckJson[]; alreadyChecking: string[] }) };
  };
  const fodCount = async (outcome: string) =>
    sampleValue(parsePrometheusText(await (await fetch(`${t.coordinator.url}/metrics`)).text()), 'kiln_fod_checks_total', { outcome }) ?? 0;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-fod-'));
    source = new SourceServer(await freePort());
    source.content = `source of ${nonce}\n`;
    await source.start();
    drv = fetchDerivation(`source-${nonce}.txt`, source.url, source.content);
    output = nix('nix-store', ['--query', '--outputs', drv]).toString().trim();
    t = await startTestCoordinator(kind);
    const { agent: a } = await t.admin.createAgent({ name: 'fetcher' });
    const { password } = await t.admin.createAgentPassword({ agentId: a!.id });
    agent = startAgentProcess({ coordinatorUrl: t.coordinator.url, id: a!.id, password, store: join(root, 'agent'), builder: 'local', maxParallel: 1 });
    const { build } = await t.admin.submitBuild({ derivationPath: drv, derivations: closureOf(drv) });
    firstBuild = build!.id;
    const state = async () => (await t.admin.getBuild({ id: firstBuild })).build!.state;
    await waitForBuilds(t.coordinator, async () => FINAL.includes(await state()), 120_000, async () => `the fetch is ${BuildState[await state()]}\n${agent.output().slice(-3000)}`);
    expect(BuildState[await state()]).toBe('SUCCEEDED');
    served = await checkServedNar(t.coordinator.url, output);
  }, 180_000);

  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
    await source?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('a re-check fetches the source again and passes, at the lowest priority, and the served output stays the first build\'s', async () => {
    const before = source.requests;
    const r = await fodCheck();
    expect(r.code).toBe(0);
    expect(r.checks).toEqual([expect.objectContaining({ derivationPath: drv, outcome: 'FIXED_OUTPUT_CHECK_OUTCOME_PASSED', message: '' })]);
    expect(source.requests).toBe(before + 1);
    const [check] = await t.coordinator.database.db.select().from(builds).where(eq(builds.id, r.checks[0]!.buildId));
    expect({ state: check!.state, priority: check!.priority }).toEqual({ state: 'succeeded', priority: -1_000_000 });
    const [row] = await t.coordinator.database.db.select().from(storePaths).where(eq(storePaths.path, output));
    expect(row!.buildId).toBe(firstBuild);
    expect(await fodCount('passed')).toBe(1);
    const { events } = await t.admin.listEvents({ types: ['fod-check-passed'] });
    expect(events.map((e) => e.buildId)).toEqual([r.checks[0]!.buildId]);
  }, 120_000);

  test('after the content changed, the re-check reports the hash mismatch with the fetcher\'s message, an event and a metric; the cache serves the output first built', async () => {
    source.content = `other content of ${nonce}\n`;
    const r = await fodCheck();
    expect(r.code).toBe(1);
    expect(r.checks).toHaveLength(1);
    const check = r.checks[0]!;
    expect(check.outcome).toBe('FIXED_OUTPUT_CHECK_OUTCOME_FAILED');
    expect(check.message).toContain(`hash mismatch in fixed-output derivation '${drv}'`);
    const { events } = await t.admin.listEvents({ types: ['fod-check-failed'] });
    expect(events).toHaveLength(1);
    expect(JSON.parse(events[0]!.payloadJson)).toEqual({ derivationPath: drv, message: check.message });
    expect(await fodCount('failed')).toBe(1);
    expect(await checkServedNar(t.coordinator.url, output)).toEqual(served);

    // The text form, and the list of failing derivations.
    const list = await runCli(['qa', 'fod-checks', '--failed', '--latest'], cliEnv(t));
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(`failed   ${drv} build ${check.buildId}`);
    expect(list.stdout).toContain('  hash mismatch in fixed-output derivation');
  }, 120_000);

  test('with the server down, the re-check reports that it cannot fetch the source', async () => {
    await source.stop();
    const r = await fodCheck();
    expect(r.code).toBe(1);
    expect(r.checks[0]).toMatchObject({ outcome: 'FIXED_OUTPUT_CHECK_OUTCOME_FAILED' });
    expect(r.checks[0]!.message).toContain(`cannot fetch ${source.url}: ECONNREFUSED`);
    expect(await fodCount('failed')).toBe(2);
    expect(await checkServedNar(t.coordinator.url, output)).toEqual(served);
    // Only the latest check of the derivation, by the API.
    const { checks } = await t.admin.listFixedOutputChecks({ latestOnly: true });
    expect(checks.map((c) => [c.buildId, c.outcome])).toEqual([[r.checks[0]!.buildId, FixedOutputCheckOutcome.FAILED]]);
    // The dashboard's read-only token may list the checks, not submit them.
    const readOnly = createAdminClient(t.coordinator.url, t.coordinator.dashboardToken);
    expect((await readOnly.listFixedOutputChecks({ latestOnly: true })).checks).toHaveLength(1);
    await expect(readOnly.checkFixedOutputs({})).rejects.toMatchObject({ code: Code.PermissionDenied });
  }, 120_000);

  test('filters: a name matched with *, an age, a tag; nothing selected is said so', async () => {
    const none = await runCli(['qa', 'fod-check', '--name', 'nothing-*'], cliEnv(t));
    expect(none.stdout).toContain('no fixed-output derivation to check');
    // Checked a moment ago: not older than a day.
    expect((await t.admin.checkFixedOutputs({ name: `source-${nonce}*`, olderThanSeconds: 86_400n })).checks).toEqual([]);
    // The build carries no tags: a tag selects nothing.
    expect((await t.admin.checkFixedOutputs({ tags: [{ key: 'team', value: 'x' }] })).checks).toEqual([]);
    const bad = await runCli(['qa', 'fod-check', '--older-than', 'soon'], cliEnv(t));
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--older-than "soon": give a length of time');
  }, 60_000);
});

describe('fixed-output re-checks on the configured schedule (pglite)', () => {
  let root: string;
  let source: SourceServer;
  let t: TestCoordinator;
  let agent: AgentProcess;
  const nonce = randomUUID().slice(0, 8);

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-fod-schedule-'));
    source = new SourceServer(await freePort());
    source.content = `scheduled source of ${nonce}\n`;
    await source.start();
    // Every 2 seconds, one at a time, at priority -500.
    t = await startTestCoordinator('pglite', { fodCheck: { everyMs: 2000, tags: [], concurrency: 1, priority: -500 }, fodCheckPollMs: 200 });
    const { agent: a } = await t.admin.createAgent({ name: 'fetcher' });
    const { password } = await t.admin.createAgentPassword({ agentId: a!.id });
    agent = startAgentProcess({ coordinatorUrl: t.coordinator.url, id: a!.id, password, store: join(root, 'agent'), builder: 'local', maxParallel: 1 });
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
    await source?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('checks come by themselves, one at a time, and a check waiting for the agent goes after an ordinary build submitted later', async () => {
    const drv = fetchDerivation(`scheduled-${nonce}.txt`, source.url, source.content);
    const { build: first } = await t.admin.submitBuild({ derivationPath: drv, derivations: closureOf(drv) });
    const checks = () => t.admin.listFixedOutputChecks({ pageSize: 1000 });
    const passed = async () => (await checks()).checks.filter((c) => c.outcome === FixedOutputCheckOutcome.PASSED).length;
    await waitForBuilds(t.coordinator, async () => (await passed()) >= 2, 60_000, async () => `checks: ${JSON.stringify((await checks()).checks.map((c) => FixedOutputCheckOutcome[c.outcome]))}\n${agent.output().slice(-2000)}`);
    const rows = await t.coordinator.database.db.select().from(builds).where(eq(builds.derivationPath, drv));
    expect(rows.filter((b) => b.priority === -500).length).toBeGreaterThanOrEqual(2);
    // Never two at once: each check was asked for after the one before had ended.
    const ended = (await checks()).checks.filter((c) => c.finishedAt).reverse();
    for (let i = 1; i < ended.length; i++) expect(Number(ended[i]!.requestedAt!.seconds) * 1000 + ended[i]!.requestedAt!.nanos / 1e6).toBeGreaterThanOrEqual(Number(ended[i - 1]!.finishedAt!.seconds) * 1000 + ended[i - 1]!.finishedAt!.nanos / 1e6);

    // The agent's one slot busy with a slow build; a check comes due meanwhile, then an ordinary build is submitted.
    const [slow, later] = instantiate(`[
      (${shDrv(`slow-${nonce}`, 'sleep 6; echo slow > $out')})
      (${shDrv(`later-${nonce}`, 'echo later > $out')})
    ]`) as [string, string];
    const { build: slowBuild } = await t.admin.submitBuild({ derivationPath: slow, derivations: closureOf(slow) });
    const stateOf = async (id: string) => (await t.admin.getBuild({ id })).build!;
    await waitForBuilds(t.coordinator, async () => (await stateOf(slowBuild!.id)).state === BuildState.STARTED, 30_000, async () => `slow is ${BuildState[(await stateOf(slowBuild!.id)).state]}`);
    const open = async () => (await checks()).checks.find((c) => c.outcome === FixedOutputCheckOutcome.PENDING);
    await waitForBuilds(t.coordinator, async () => (await open()) !== undefined, 30_000, async () => 'no check came due while the slow build ran');
    const waiting = (await open())!;
    expect((await stateOf(slowBuild!.id)).state).toBe(BuildState.STARTED);
    // A submission that asks for an existing build of the outputs gets the first build, never the check.
    const again = await t.admin.submitBuild({ derivationPath: drv, ignoreIfOutputExists: true });
    expect({ existing: again.existing, id: again.build!.id }).toEqual({ existing: true, id: first!.id });
    const { build: laterBuild } = await t.admin.submitBuild({ derivationPath: later, derivations: closureOf(later) });
    await waitForBuilds(
      t.coordinator,
      async () => (await stateOf(laterBuild!.id)).state === BuildState.SUCCEEDED && (await stateOf(waiting.buildId)).state === BuildState.SUCCEEDED,
      60_000,
      async () => `later is ${BuildState[(await stateOf(laterBuild!.id)).state]}, the check ${BuildState[(await stateOf(waiting.buildId)).state]}`,
    );
    const allocated = async (id: string) => (await stateOf(id)).attempts[0]!.allocatedAt!;
    const ms = (ts: { seconds: bigint; nanos: number }) => Number(ts.seconds) * 1000 + ts.nanos / 1e6;
    expect(ms(await allocated(laterBuild!.id))).toBeLessThan(ms(await allocated(waiting.buildId)));
  }, 180_000);
});

describe('fixed-output re-checks, nix builder with builtin:fetchurl (pglite)', () => {
  let root: string;
  let source: SourceServer;
  let t: TestCoordinator;
  let agent: AgentProcess;
  let drv: string;
  let output: string;
  let served: { narHash: string; narSize: number };
  const nonce = randomUUID().slice(0, 8);
  const fodCheck = async () => {
    const r = await runCli(['qa', 'fod-check', '--wait', '--json'], cliEnv(t));
    expect(r.stderr).toBe('');
    return { code: r.code, ...(JSON.parse(r.stdout) as { checks: CheckJson[] }) };
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-fod-nix-'));
    source = new SourceServer(await freePort());
    source.content = `fetched by Nix for ${nonce}\n`;
    await source.start();
    const sha256 = createHash('sha256').update(source.content).digest('hex');
    [drv] = instantiate(`import <nix/fetchurl.nix> { url = ${JSON.stringify(source.url)}; sha256 = "${sha256}"; name = "nix-source-${nonce}"; }`) as [string];
    output = nix('nix-store', ['--query', '--outputs', drv]).toString().trim();
    t = await startTestCoordinator('pglite');
    const { agent: a } = await t.admin.createAgent({ name: 'nix-fetcher' });
    const { password } = await t.admin.createAgentPassword({ agentId: a!.id });
    // builtin:fetchurl's derivations are of the system "builtin".
    agent = startAgentProcess({ coordinatorUrl: t.coordinator.url, id: a!.id, password, store: join(root, 'agent'), builder: 'nix', maxParallel: 1, extraArgs: ['--system', 'builtin'] });
    const { build } = await t.admin.submitBuild({ derivationPath: drv, derivations: closureOf(drv) });
    const state = async () => (await t.admin.getBuild({ id: build!.id })).build!.state;
    await waitForBuilds(t.coordinator, async () => FINAL.includes(await state()), 120_000, async () => `the fetch is ${BuildState[await state()]}\n${agent.output().slice(-3000)}`);
    expect(BuildState[await state()]).toBe('SUCCEEDED');
    served = await checkServedNar(t.coordinator.url, output);
  }, 180_000);

  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
    await source?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('Nix fetches again and passes; then reports the changed content as a hash mismatch, then the server down; the first output stays served', async () => {
    const before = source.requests;
    const passed = await fodCheck();
    expect({ code: passed.code, outcome: passed.checks[0]?.outcome }).toEqual({ code: 0, outcome: 'FIXED_OUTPUT_CHECK_OUTCOME_PASSED' });
    expect(source.requests).toBeGreaterThan(before);

    source.content = `other bytes for ${nonce}\n`;
    const changed = await fodCheck();
    expect({ code: changed.code, outcome: changed.checks[0]?.outcome }).toEqual({ code: 1, outcome: 'FIXED_OUTPUT_CHECK_OUTCOME_FAILED' });
    expect(changed.checks[0]!.message).toContain(`hash mismatch in fixed-output derivation '${drv}'`);

    await source.stop();
    const down = await fodCheck();
    expect({ code: down.code, outcome: down.checks[0]?.outcome }).toEqual({ code: 1, outcome: 'FIXED_OUTPUT_CHECK_OUTCOME_FAILED' });
    expect(down.checks[0]!.message).toMatch(new RegExp(`unable to download '${source.url}'.*(Couldn't connect|Connection refused)`));
    expect(await checkServedNar(t.coordinator.url, output)).toEqual(served);
  }, 240_000);
});
