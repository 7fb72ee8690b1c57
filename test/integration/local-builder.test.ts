// The local builder through its Builder interface, against a real coordinator's cache:
// what it reports when inputs are missing, the environment its builders see (compared
// with what Nix gives the same derivation), fixed-output checks, and failures that leave
// nothing behind.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BuildJob, BuildOutcome } from '../../src/agent/builders/builder.js';
import { LocalBuilder } from '../../src/agent/builders/local.js';
import { parseDerivation } from '../../src/store/derivation.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { chain, closureOf, shDrv } from '../helpers/derivations.js';
import { CHROOT_STORE_CONFIG, instantiate, nixEnv } from '../helpers/nix.js';

const run = promisify(execFile);

function jobOf(drvPath: string, limits: Partial<Pick<BuildJob, 'timeoutSeconds' | 'maxSilentSeconds'>> = {}): BuildJob {
  const derivation = readFileSync(drvPath, 'utf8');
  return {
    buildId: randomUUID(),
    derivationPath: drvPath,
    derivation,
    outputs: [...parseDerivation(derivation).outputs].map(([name, o]) => ({ name, path: o.path })),
    timeoutSeconds: limits.timeoutSeconds ?? 0,
    maxSilentSeconds: limits.maxSilentSeconds ?? 0,
  };
}

describe('the local builder', () => {
  let t: TestCoordinator;
  let root: string;
  let builder: LocalBuilder;

  async function build(drvPath: string): Promise<{ outcome: BuildOutcome; log: string }> {
    const chunks: Buffer[] = [];
    const outcome = await builder.build(jobOf(drvPath), { signal: new AbortController().signal, log: (c) => chunks.push(c) });
    return { outcome, log: Buffer.concat(chunks).toString() };
  }

  beforeAll(async () => {
    t = await startTestCoordinator('pglite');
    root = mkdtempSync(join(tmpdir(), 'kiln-local-'));
    builder = new LocalBuilder({ cache: { url: t.coordinator.url, publicKey: t.coordinator.nixPublicKey }, storeRoot: join(root, 'store'), cores: 3 });
  });

  afterAll(async () => {
    await t?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('reports an input derivation whose outputs the cache lacks as a missing input', async () => {
    const { top, mid, leaf } = chain(randomUUID().slice(0, 8));
    // Submitted: the .drv files are in the cache, but nothing is built.
    await t.admin.submitBuild({ derivationPath: top, derivations: closureOf(top) });
    const { outcome } = await build(mid);
    expect(outcome).toEqual({
      kind: 'setup-failure',
      reason: 'missing-inputs',
      missingInputs: [leaf],
      message: `inputs are neither in this store nor in the coordinator's cache: ${leaf}`,
    });
  });

  test('reports an input derivation the cache does not know, and an input source it lacks', async () => {
    const nonce = randomUUID().slice(0, 8);
    const { mid, leaf } = chain(nonce); // never submitted
    const [withSource] = instantiate(`let src = builtins.toFile "src-${nonce}" "hello"; in ${shDrv(`with-src-${nonce}`, 'cat ${src} > $out')}`);
    const source = parseDerivation(readFileSync(withSource!, 'utf8')).inputSrcs[0]!;
    expect((await build(mid)).outcome).toMatchObject({ kind: 'setup-failure', reason: 'missing-inputs', missingInputs: [leaf] });
    expect((await build(withSource!)).outcome).toMatchObject({ kind: 'setup-failure', reason: 'missing-inputs', missingInputs: [source] });
  });

  test('gives the builder the environment Nix gives it, passAsFile included', async () => {
    const nonce = randomUUID().slice(0, 8);
    const expr = shDrv(`env-${nonce}`, '/usr/bin/env -0 > $out; cat $bigPath >> $out; pwd >> $out', `passAsFile = [ "big" ]; big = "${'x'.repeat(50)}"; other = "o";`);
    const [drv] = instantiate(expr);
    const { outcome } = await build(drv!);
    expect(outcome.kind).toBe('success');
    const [ours] = (outcome as Extract<BuildOutcome, { kind: 'success' }>).outputs;

    // The same derivation built by Nix in a chroot store of its own (its build directory is /build).
    const nixStore = join(root, 'nix');
    const env = nixEnv([...CHROOT_STORE_CONFIG, 'cores = 3']);
    await run('nix-instantiate', ['--store', nixStore, '--expr', expr], { env });
    const [nixOut] = (await run('nix-store', ['--store', nixStore, '--realise', drv!], { env })).stdout.trim().split('\n');
    const normalise = (text: string, buildDir: string) => text.split(buildDir).join('<build>').split('\0').sort();
    const mine = readFileSync(ours!.diskPath, 'utf8');
    const buildDir = /NIX_BUILD_TOP=([^\0]*)/.exec(mine)![1]!;
    expect(buildDir).toMatch(/\/kiln-build-env-/);
    expect(normalise(mine, buildDir)).toEqual(normalise(readFileSync(join(nixStore, nixOut!), 'utf8'), '/build'));
    // The build directory is gone.
    expect(existsSync(buildDir)).toBe(false);
  });

  test('checks a fixed output\'s hash', async () => {
    const nonce = randomUUID().slice(0, 8);
    const fixed = `outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "${createHash('sha256').update('hi').digest('hex')}";`;
    const [good, bad] = instantiate(`[
      (${shDrv(`fixed-good-${nonce}`, 'printf hi > $out', fixed)})
      (${shDrv(`fixed-bad-${nonce}`, 'printf ho > $out', fixed)})
    ]`);
    expect((await build(good!)).outcome).toMatchObject({ kind: 'success', outputs: [{ name: 'out', references: [] }] });
    const { outcome } = await build(bad!);
    expect(outcome).toMatchObject({ kind: 'failure', message: expect.stringContaining(`hash mismatch in fixed-output derivation '${bad}'`) });
    // A failed build's output is not kept.
    expect(existsSync(join(root, 'store', jobOf(bad!).outputs[0]!.path))).toBe(false);
  });

  test('fails a build that exits non-zero or does not make its outputs, with the end of its log', async () => {
    const nonce = randomUUID().slice(0, 8);
    const [exits, lazy] = instantiate(`[
      (${shDrv(`exits-${nonce}`, 'echo about to fail; exit 7')})
      (${shDrv(`lazy-${nonce}`, 'echo made nothing', 'outputs = [ "out" "dev" ];')})
    ]`);
    const failed = await build(exits!);
    expect(failed.log).toBe('about to fail\n');
    expect(failed.outcome).toEqual({ kind: 'failure', message: `builder for '${exits}' failed with exit code 7; last log lines:\nabout to fail` });
    expect((await build(lazy!)).outcome).toMatchObject({ kind: 'failure', message: expect.stringMatching(/failed to produce output path for output '(out|dev)'/) });
  });

  test('builds straight into its store directory when given no root', async () => {
    // A store directory of its own, named by derivations that Nix writes elsewhere.
    const storeDir = join(root, 'plain', 'store');
    const url = `local?store=${storeDir}&real=${join(root, 'plain-nix')}&state=${join(root, 'plain-state')}&log=${join(root, 'plain-log')}`;
    const [drv] = (await run('nix-instantiate', ['--store', url, '--expr', shDrv(`plain-${randomUUID().slice(0, 8)}`, 'echo plain > $out')], { env: nixEnv() })).stdout.trim().split('\n');
    const job = { ...jobOf(join(root, 'plain-nix', drv!.slice(storeDir.length))), derivationPath: drv! };
    const plain = new LocalBuilder({ cache: { url: t.coordinator.url, publicKey: t.coordinator.nixPublicKey }, storeDir });
    const outcome = await plain.build(job, { signal: new AbortController().signal, log: () => undefined });
    const out = job.outputs[0]!.path;
    expect(outcome).toEqual({ kind: 'success', outputs: [{ name: 'out', storePath: out, diskPath: out, references: [] }] });
    expect(readFileSync(out, 'utf8')).toBe('plain\n');
    expect(existsSync(join(root, 'plain', 'var', 'kiln', 'valid', `${parseStorePath(out).hashPart}.json`))).toBe(true);
  });

  test('refuses a derivation in another store directory than its own', async () => {
    const other = new LocalBuilder({ cache: { url: t.coordinator.url, publicKey: t.coordinator.nixPublicKey }, storeRoot: join(root, 'gnu'), storeDir: '/gnu/store' });
    const { mid } = chain(randomUUID().slice(0, 8));
    const outcome = await other.build(jobOf(mid), { signal: new AbortController().signal, log: () => undefined });
    expect(outcome).toMatchObject({ kind: 'setup-failure', reason: 'other', message: expect.stringContaining('start the agent with --store-dir /nix/store') });
  });
});
