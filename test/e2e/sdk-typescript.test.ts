// The TypeScript SDK (sdk/typescript, @kiln/sdk) against a real coordinator and a real
// agent (the local builder): built as its package and imported by its name from a
// script of a project of its own, it submits a derivation and waits for its build; and
// its wrapper (the CLI's too) pages, waits, finds the token and refuses a wrong one.
import { describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Code, ConnectError } from '@connectrpc/connect';
import { BuildState, ClientSetupError, connectAdmin, createAdminClient, listAllBuilds, waitForBuild } from '../../sdk/typescript/src/index.js';
import { REPO_ROOT } from '../helpers/coordinator.js';
import { closureOf, shDrv } from '../helpers/derivations.js';
import { useLocalFarm } from '../helpers/local-farm.js';
import { instantiate } from '../helpers/nix.js';
import { useTlsCoordinator } from '../helpers/tls-coordinator.js';

const run = promisify(execFile);
const SDK_DIR = join(REPO_ROOT, 'sdk', 'typescript');

// What a user of the package writes: the package by its name, the token from the
// coordinator's data directory, the derivation's text read from the store.
const CONSUMER = `
import { readFileSync } from 'node:fs';
import { BuildState, connectAdmin, listAllBuilds, waitForBuild } from '@kiln/sdk';
const drv = process.argv[2];
const admin = connectAdmin();
const { build } = await admin.submitBuild({ derivationPath: drv, derivations: [{ path: drv, text: readFileSync(drv) }] });
const states = [];
const done = await waitForBuild(admin, build.id, { timeoutMs: 120000, onChange: (b) => states.push(BuildState[b.state]) });
const listed = [];
for await (const b of listAllBuilds(admin, { derivationPath: drv, pageSize: 1 })) listed.push(b.id);
console.log(JSON.stringify({ id: build.id, state: BuildState[done.state], states, outputs: done.outputs.map((o) => o.path), listed }));
`;

describe('the TypeScript SDK against a coordinator and a local agent', () => {
  const farm = useLocalFarm('sdk-typescript');
  const env = () => ({ KILN_COORDINATOR: farm().t.coordinator.url, KILN_DATA_DIR: farm().t.dataDir });

  test('the package, built and imported as @kiln/sdk, submits a derivation and waits until it succeeded', async () => {
    const { t } = farm();
    await run(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(SDK_DIR, 'tsconfig.json')], { timeout: 240_000 });
    // A project of its own with the package installed under its name (as npm links a workspace).
    const project = join(farm().root, 'consumer');
    mkdirSync(join(project, 'node_modules', '@kiln'), { recursive: true });
    symlinkSync(SDK_DIR, join(project, 'node_modules', '@kiln', 'sdk'));
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', private: true }));
    writeFileSync(join(project, 'main.js'), CONSUMER);

    const [drv] = instantiate(shDrv(`ts-sdk-${randomUUID().slice(0, 8)}`, 'echo from the sdk > $out'));
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KILN_')));
    const { stdout } = await run(process.execPath, [join(project, 'main.js'), drv!], { cwd: project, env: { ...base, ...env() }, timeout: 180_000 });
    const result = JSON.parse(stdout) as { id: string; state: string; states: string[]; outputs: string[]; listed: string[] };
    expect(result.state).toBe('SUCCEEDED');
    expect(result.states.at(-1)).toBe('SUCCEEDED');
    expect(result.listed).toEqual([result.id]);
    const { build } = await t.admin.getBuild({ id: result.id });
    expect(build!.state).toBe(BuildState.SUCCEEDED);
    expect(result.outputs).toEqual(build!.outputs.map((o) => o.path));
  }, 300_000);

  test('listAllBuilds pages through every build, and waitForBuild returns a failed build', async () => {
    const { t } = farm();
    const nonce = randomUUID().slice(0, 8);
    const drvs = instantiate(`[ (${shDrv(`ok-${nonce}`, 'echo ok > $out')}) (${shDrv(`bad-${nonce}`, 'echo no; exit 1')}) ]`);
    const admin = connectAdmin({ env: env() });
    const ids: string[] = [];
    for (const drv of drvs) ids.push((await admin.submitBuild({ derivationPath: drv, derivations: closureOf(drv) })).build!.id);
    const [ok, bad] = await Promise.all(ids.map((id) => waitForBuild(admin, id, { timeoutMs: 120_000 })));
    expect([ok!.state, bad!.state]).toEqual([BuildState.SUCCEEDED, BuildState.FAILED]);

    const everyBuild = (await t.admin.listBuilds({ pageSize: 1000 })).builds;
    const all: string[] = [];
    for await (const b of listAllBuilds(admin, { pageSize: 2 })) all.push(b.id);
    expect(all).toEqual(everyBuild.map((b) => b.id));
    expect(all).toEqual(expect.arrayContaining(ids));
    const failed: string[] = [];
    for await (const b of listAllBuilds(admin, { states: [BuildState.FAILED], pageSize: 1 })) failed.push(b.id);
    expect(failed).toEqual(everyBuild.filter((b) => b.state === BuildState.FAILED).map((b) => b.id));
    expect(failed).toContain(bad!.id);
  }, 180_000);

  test('waitForBuild stops when its signal aborts, and at its timeout', async () => {
    const { t } = farm();
    const [drv] = instantiate(shDrv(`slow-${randomUUID().slice(0, 8)}`, 'sleep 30; echo late > $out'));
    const { build } = await t.admin.submitBuild({ derivationPath: drv!, derivations: closureOf(drv!) });
    await expect(waitForBuild(t.admin, build!.id, { timeoutMs: 300 })).rejects.toThrow(new RegExp(`^build ${build!.id} is still \\w+ after 300 ms$`));
    const abort = new AbortController();
    const waiting = waitForBuild(t.admin, build!.id, { signal: abort.signal, onChange: () => abort.abort(new Error('stopped by the caller')) });
    await expect(waiting).rejects.toThrow('stopped by the caller');
    await t.admin.cancelBuild({ id: build!.id });
  }, 60_000);

  test('a wrong token is refused as unauthenticated; no token at all names both ways to give one', async () => {
    const { t } = farm();
    const wrong = createAdminClient(t.coordinator.url, 'not-the-token');
    const err = await wrong.listBuilds({}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect([(err as ConnectError).code, (err as ConnectError).rawMessage]).toEqual([Code.Unauthenticated, 'wrong admin token']);

    const empty = mkdtempSync(join(tmpdir(), 'kiln-no-token-'));
    try {
      expect(() => connectAdmin({ env: { KILN_DATA_DIR: empty } })).toThrow(ClientSetupError);
      expect(() => connectAdmin({ env: { KILN_DATA_DIR: empty } })).toThrow(`no file ${join(empty, 'admin-token')} (KILN_DATA_DIR=${empty})`);
      // The token file as the coordinator wrote it.
      expect(readFileSync(join(t.dataDir, 'admin-token'), 'utf8').trim()).toBe(t.coordinator.adminToken);
      expect(() => connectAdmin({ env: { ...env(), KILN_TLS_CA: join(empty, 'ca.pem') } })).toThrow(/was given for http:\/\/.*, which is not https:\/\//);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('the TypeScript SDK against a coordinator with TLS', () => {
  const tls = useTlsCoordinator();

  test('trusts the CA of KILN_TLS_CA, and without it the certificate is refused', async () => {
    const { coordinator, dataDir, certFile } = tls();
    const env = { KILN_COORDINATOR: coordinator.url, KILN_DATA_DIR: dataDir, KILN_TLS_CA: certFile };
    const { agent } = await connectAdmin({ env }).createAgent({ name: 'over-tls' });
    expect(agent!.name).toBe('over-tls');
    const untrusted = await connectAdmin({ env: { ...env, KILN_TLS_CA: '' } }).listAgents({}).catch((e: unknown) => e);
    expect(untrusted).toBeInstanceOf(ConnectError);
    expect((untrusted as ConnectError).message).toMatch(/self[- ]signed certificate/);
  }, 60_000);
});
