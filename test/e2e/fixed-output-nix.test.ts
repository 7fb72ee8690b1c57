// Fixed-output derivations end to end with real Nix: a `kiln agent run` process with the
// nix builder builds a flat and a recursive one; each narinfo carries the CA line Nix
// itself records for the same path built locally (`nix path-info --json`), its Sig is
// the one `nix store sign` makes with the cache's key (Nix's fingerprint has no CA), and
// empty Nix stores substitute them with signatures required.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { parseNarInfo } from '../../src/store/narinfo.js';
import { generateNixKey, renderNixPublicKey } from '../../src/store/nix-signature.js';
import { startNewAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { cliEnv, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { SYSTEM } from '../helpers/derivations.js';
import { instantiate, nix, NIX_CONFIG } from '../helpers/nix.js';
import { waitForBuilds } from '../helpers/wait.js';

const run = promisify(execFile);
const FINAL = [BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED];

interface PathInfo {
  path: string;
  ca?: string;
  signatures?: string[];
}

function pathInfo(path: string, store?: string): PathInfo {
  const [info] = JSON.parse(nix('nix', ['path-info', '--json', '--sigs', ...(store ? ['--store', store] : []), path]).toString()) as PathInfo[];
  return info!;
}

describe('fixed-output derivations with the nix builder', () => {
  let t: TestCoordinator;
  let root: string;
  let agent: AgentProcess | undefined;
  const nonce = `${Date.now()}`;
  const drvs: Record<'flat' | 'recursive', string> = { flat: '', recursive: '' };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-e2e-fod-'));
    // The outputs' hashes from Nix's own tool: of the file, and of the directory's NAR.
    const flatText = `flat ${nonce}\n`;
    writeFileSync(join(root, 'flat'), flatText);
    const flatHash = nix('nix-hash', ['--type', 'sha256', '--flat', join(root, 'flat')]).toString().trim();
    mkdirSync(join(root, 'tree'));
    writeFileSync(join(root, 'tree', 'file'), `tree ${nonce}\n`);
    const treeHash = nix('nix-hash', ['--type', 'sha256', join(root, 'tree')]).toString().trim();
    const fod = (name: string, script: string, mode: string, hash: string) =>
      `derivation { name = "${name}"; system = "${SYSTEM}"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" ${JSON.stringify(script)} ];
        outputHashAlgo = "sha256"; outputHashMode = "${mode}"; outputHash = "${hash}"; }`;
    [drvs.flat, drvs.recursive] = instantiate(`[ (${fod(`fod-flat-${nonce}`, `printf 'flat ${nonce}\\n' > $out`, 'flat', flatHash)})
      (${fod(`fod-tree-${nonce}`, `mkdir $out && printf 'tree ${nonce}\\n' > $out/file`, 'recursive', treeHash)}) ]`) as [string, string];
    t = await startTestCoordinator('pglite');
    agent = await startNewAgentProcess(t, 'fixed-outputs', { store: join(root, 'agent') });
  });

  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('kiln builds them; the narinfo has the CA and Sig Nix gives the same path; Nix substitutes them with signatures required', async () => {
    const ids: Record<string, string> = {};
    for (const [kind, drv] of Object.entries(drvs)) {
      const submitted = await runCli(['build', 'submit', '--json', drv], cliEnv(t));
      expect({ code: submitted.code, stderr: submitted.stderr }).toEqual({ code: 0, stderr: '' });
      ids[kind] = (JSON.parse(submitted.stdout) as [{ build: { id: string } }])[0].build.id;
    }
    const state = async (id: string) => (await t.admin.getBuild({ id })).build!.state;
    await waitForBuilds(
      t.coordinator,
      async () => (await Promise.all(Object.values(ids).map(state))).every((s) => FINAL.includes(s)),
      120_000,
      async () => `states ${(await Promise.all(Object.values(ids).map(state))).map((s) => BuildState[s]).join(' ')}\n--- agent ---\n${agent!.output().slice(-1500)}`,
    );
    const outputs: Record<string, string> = {};
    for (const [kind, id] of Object.entries(ids)) {
      const { build } = await t.admin.getBuild({ id });
      expect([kind, build!.state]).toEqual([kind, BuildState.SUCCEEDED]);
      outputs[kind] = build!.outputs[0]!.path;
    }

    // The same derivations built by the local Nix; the cache's key signs them the Nix way.
    const keyFile = join(t.dataDir, 'cache-key.sec');
    for (const [kind, path] of Object.entries(outputs)) {
      nix('nix-store', ['--realise', drvs[kind as keyof typeof drvs]]);
      nix('nix', ['store', 'sign', '--key-file', keyFile, path]);
      const local = pathInfo(path);
      expect(local.ca).toMatch(kind === 'flat' ? /^fixed:sha256:[0-9a-z]{52}$/ : /^fixed:r:sha256:[0-9a-z]{52}$/);
      const res = await fetch(`${t.coordinator.url}/${path.slice('/nix/store/'.length, '/nix/store/'.length + 32)}.narinfo`);
      expect(res.status).toBe(200);
      const narinfo = parseNarInfo(await res.text());
      expect([kind, narinfo.ca]).toEqual([kind, local.ca]);
      const localSig = local.signatures!.find((s) => s.startsWith(`${t.coordinator.nixPublicKey.split(':')[0]}:`));
      expect([kind, narinfo.sigs]).toEqual([kind, [localSig]]);
    }

    // Empty stores substitute them with signatures required: one trusting the cache's key,
    // and one trusting another key only, which Nix lets through for a path whose CA
    // gives its store path (checkSignatures in Nix's path-info.cc): a wrong CA would fail it.
    const other = renderNixPublicKey(generateNixKey('not-the-cache-1').publicKey);
    for (const [name, trusted] of [['trusting', t.coordinator.nixPublicKey], ['ca-only', other]] as const) {
      const store = join(root, `client-${name}`);
      const config = [NIX_CONFIG.replace('substituters =', `substituters = ${t.coordinator.url}`), `trusted-public-keys = ${trusted}`, 'require-sigs = true'];
      // Asynchronously: the coordinator serving these downloads runs in this process.
      const env = { ...process.env, NIX_CONFIG: config.join('\n'), XDG_CACHE_HOME: join(root, `cache-${name}`) };
      await run('nix-store', ['--store', store, '--realise', outputs.flat!, outputs.recursive!], { env });
      expect(readFileSync(join(store, outputs.flat!), 'utf8')).toBe(`flat ${nonce}\n`);
      expect(readFileSync(join(store, outputs.recursive!, 'file'), 'utf8')).toBe(`tree ${nonce}\n`);
      for (const path of Object.values(outputs)) expect(pathInfo(path, store).ca).toBe(pathInfo(path).ca);
    }
  }, 300_000);
});
