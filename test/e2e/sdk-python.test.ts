// The Python SDK (sdk/python) through Debian's python3-grpcio against a real coordinator
// and a real agent (the local builder): its example scripts submit a real derivation and
// wait for it, page through the builds, find the token as the CLI does, speak TLS, and
// say what is wrong with a bad token.
import { describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { REPO_ROOT } from '../helpers/coordinator.js';
import { chain, shDrv, sourcedDrv } from '../helpers/derivations.js';
import { useLocalFarm } from '../helpers/local-farm.js';
import { instantiate } from '../helpers/nix.js';
import { useTlsCoordinator } from '../helpers/tls-coordinator.js';

const EXAMPLES = join(REPO_ROOT, 'sdk', 'python', 'examples');

interface PythonResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one of the SDK's example scripts with Debian's Python, in an environment of only `env` for kiln. */
function runExample(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<PythonResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KILN_')));
  return new Promise((resolve) => {
    execFile(
      '/usr/bin/python3',
      [join(EXAMPLES, script), ...args],
      { env: { ...base, PYTHONDONTWRITEBYTECODE: '1', ...env }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

describe('the Python SDK against a coordinator and a local agent', () => {
  // Tagged, so that it takes the build submitted with --tag from=python too.
  const farm = useLocalFarm('sdk-python', ['--tag', 'from=python']);
  const env = () => ({ KILN_COORDINATOR: farm().t.coordinator.url, KILN_DATA_DIR: farm().t.dataDir });

  test('submit_and_wait.py submits a derivation with its inputs\' texts and exits 0 once it succeeded', async () => {
    const { t } = farm();
    const nonce = randomUUID().slice(0, 8);
    const { top } = chain(nonce);
    const run = await runExample('submit_and_wait.py', ['--tag', 'from=python', top], env());
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const id = /^submitted build (\S+) of (\S+)$/m.exec(run.stdout)?.[1];
    expect(id).toBeDefined();
    const { build } = await t.admin.getBuild({ id: id! });
    expect(build!.derivationPath).toBe(top);
    expect(build!.state).toBe(BuildState.SUCCEEDED);
    expect(build!.tags).toEqual([expect.objectContaining({ key: 'from', value: 'python' })]);
    expect(run.stdout).toContain(`${id} succeeded\n`);
    const out = build!.outputs[0]!.path;
    expect(run.stdout).toContain(`out ${out}\n`);
    // The output is in the cache, built through its two inputs.
    const narinfo = await fetch(`${t.coordinator.url}/${parseStorePath(out).hashPart}.narinfo`);
    expect(narinfo.status).toBe(200);
    expect(await narinfo.text()).toContain(`StorePath: ${out}\n`);
  }, 240_000);

  test('submit_and_wait.py exits 1 with the attempt\'s message when the build fails', async () => {
    const { t } = farm();
    const [drv] = instantiate(shDrv(`fails-${randomUUID().slice(0, 8)}`, 'echo it went wrong; exit 3'));
    const run = await runExample('submit_and_wait.py', [drv!], env());
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^kiln: build \S+ failed: .+/);
    const id = /^kiln: build (\S+) failed/.exec(run.stderr)![1]!;
    expect((await t.admin.getBuild({ id })).build!.state).toBe(BuildState.FAILED);
  }, 120_000);

  test('submit_and_wait.py refuses a derivation whose input sources the cache lacks, and names them', async () => {
    const { t } = farm();
    const dir = mkdtempSync(join(tmpdir(), 'kiln-sources-'));
    try {
      const { drv, wrapper, data } = sourcedDrv(randomUUID().slice(0, 8), dir);
      const run = await runExample('submit_and_wait.py', [drv], env());
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(new RegExp(`^kiln: the coordinator's cache lacks input sources of ${drv.replace(/[.+]/g, '\\$&')}: .*; submit it once with \`kiln build submit\`, which uploads them\n$`));
      expect(run.stderr).toContain(wrapper);
      expect(run.stderr).toContain(data);
      expect((await t.admin.listBuilds({ derivationPath: drv })).builds).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test('list_builds.py pages through ListBuilds one build per call and lists every build, filtered by state', async () => {
    const { t } = farm();
    const all = (await t.admin.listBuilds({ pageSize: 1000 })).builds;
    expect(all.length).toBeGreaterThanOrEqual(4);
    const run = await runExample('list_builds.py', ['--page-size', '1'], env());
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines).toEqual(all.map((b) => expect.stringMatching(new RegExp(`^${b.id} \\w+ ${b.derivationPath.replace(/[.+]/g, '\\$&')}$`))));
    const failed = await runExample('list_builds.py', ['--state', 'failed', '--page-size', '1'], env());
    expect(failed.stdout.trim().split('\n')).toEqual(all.filter((b) => b.state === BuildState.FAILED).map((b) => `${b.id} failed ${b.derivationPath}`));
  }, 60_000);

  test('a wrong admin token is refused with the coordinator\'s words and exit 1', async () => {
    const { t } = farm();
    const run = await runExample('list_builds.py', [], { KILN_COORDINATOR: t.coordinator.url, KILN_ADMIN_TOKEN: 'not-the-token' });
    expect(run).toEqual({ code: 1, stdout: '', stderr: 'kiln: unauthenticated: wrong admin token\n' });
  }, 30_000);

  test('no token anywhere names both ways to give one, and exits 2', async () => {
    const { t } = farm();
    const empty = mkdtempSync(join(tmpdir(), 'kiln-no-token-'));
    try {
      const [drv] = instantiate(shDrv(`unsent-${randomUUID().slice(0, 8)}`, 'echo x > $out'));
      const run = await runExample('submit_and_wait.py', [drv!], { KILN_COORDINATOR: t.coordinator.url, KILN_DATA_DIR: empty });
      expect(run.code).toBe(2);
      expect(run.stderr).toContain('no admin token: none in KILN_ADMIN_TOKEN');
      expect(run.stderr).toContain(`no file ${join(empty, 'admin-token')} (KILN_DATA_DIR=${empty})`);
      expect((await t.admin.listBuilds({ derivationPath: drv! })).builds).toEqual([]);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('the Python SDK against a coordinator with TLS', () => {
  const tls = useTlsCoordinator();

  test('trusts the certificate in KILN_TLS_CA, and says so when a certificate is not trusted', async () => {
    const { coordinator, dataDir, certFile } = tls();
    expect(coordinator.url).toMatch(/^https:/);
    const env = { KILN_COORDINATOR: coordinator.url, KILN_DATA_DIR: dataDir };
    const trusted = await runExample('list_builds.py', [], { ...env, KILN_TLS_CA: certFile });
    expect(trusted).toEqual({ code: 0, stdout: '', stderr: '' });
    const untrusted = await runExample('list_builds.py', [], env);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/^kiln: unavailable: .*certificate verify failed\n$/);
  }, 60_000);
});
