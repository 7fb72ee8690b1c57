// `kiln qa challenge` against a second cache made by the real Nix (`nix copy --to
// file://DIR`, served over HTTP): of three outputs kiln's local-builder agent built, the
// machine's Nix built two the same way, one deterministic (identical NAR), one that
// writes random bytes (another NAR); the third was never copied there (missing).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChallengeVerdict } from '../../gen/kiln/v1/admin_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { parseUpstreams } from '../../src/cache/upstreams/upstream-list.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { cliEnv, runCli, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { closureOf, shDrv } from '../helpers/derivations.js';
import { instantiate, nix } from '../helpers/nix.js';
import { freePort, nixUpstream, type NixUpstream } from '../helpers/upstream-cache.js';
import { waitForBuilds } from '../helpers/wait.js';

const FINAL = [BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED];

describe.each(DATABASE_KINDS)('kiln qa challenge against a nix copy cache (%s)', (kind) => {
  let root: string;
  let other: NixUpstream;
  let t: TestCoordinator;
  let agent: AgentProcess;
  const nonce = randomUUID().slice(0, 8);
  let out: { same: string; differs: string; missing: string };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-challenge-'));
    other = await nixUpstream(join(root, 'other'), `other-${nonce}`);
    const [same, differs, missing] = instantiate(`[
      (${shDrv(`same-${nonce}`, `echo same-${nonce} > $out`)})
      (${shDrv(`differs-${nonce}`, `echo differs-${nonce} > $out; od -An -N16 -tx1 /dev/urandom >> $out`)})
      (${shDrv(`missing-${nonce}`, `echo missing-${nonce} > $out`)})
    ]`) as [string, string, string];
    const outputOf = (drv: string) => nix('nix-store', ['--query', '--outputs', drv]).toString().trim();
    out = { same: outputOf(same), differs: outputOf(differs), missing: outputOf(missing) };
    // The other cache: the machine's Nix builds two of them, and copies them there signed.
    nix('nix-store', ['--realise', same, differs]);
    other.push([out.same, out.differs]);
    await other.serve();

    t = await startTestCoordinator(kind, { upstreams: parseUpstreams([{ url: other.url, publicKeys: [other.publicKey], for: 'outputs' }]) });
    const { agent: a } = await t.admin.createAgent({ name: 'builder' });
    const { password } = await t.admin.createAgentPassword({ agentId: a!.id });
    agent = startAgentProcess({ coordinatorUrl: t.coordinator.url, id: a!.id, password, store: join(root, 'agent'), builder: 'local', extraArgs: ['--tag', 'qa=yes'] });
    const submitted: string[] = [];
    for (const [drv, tags] of [[same, [{ key: 'qa', value: 'yes' }]], [differs, [{ key: 'qa', value: 'yes' }]], [missing, []]] as const) {
      submitted.push((await t.admin.submitBuild({ derivationPath: drv, derivations: closureOf(drv), tags: [...tags] })).build!.id);
    }
    const states = async () => Promise.all(submitted.map(async (id) => (await t.admin.getBuild({ id })).build!.state));
    await waitForBuilds(t.coordinator, async () => (await states()).every((s) => FINAL.includes(s)), 120_000, async () => `builds are ${(await states()).map((s) => BuildState[s])}\n${agent.output().slice(-3000)}`);
    expect((await states()).map((s) => BuildState[s])).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);
  }, 180_000);

  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
    await other?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('the CLI reports the identical NAR as a match, the different one as a mismatch with both hashes, and the one not copied as missing', async () => {
    const r = await runCli(['qa', 'challenge', '--upstream', other.url, '--json'], cliEnv(t));
    // A mismatch makes the exit code 2.
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 2, stderr: '' });
    const report = JSON.parse(r.stdout) as {
      paths: { storePath: string; narHash: string; verdicts: { cache: string; verdict: string; narHash: string; trusted: boolean }[] }[];
      summaries: { cache: string; matches: number; mismatches: number; missing: number; errors: number }[];
    };
    const verdictOf = (p: string) => report.paths.find((x) => x.storePath === p)?.verdicts[0];
    expect(verdictOf(out.same)).toMatchObject({ cache: other.url, verdict: 'CHALLENGE_VERDICT_MATCH', trusted: true });
    expect(verdictOf(out.differs)).toMatchObject({ cache: other.url, verdict: 'CHALLENGE_VERDICT_MISMATCH', trusted: true });
    expect(verdictOf(out.missing)).toMatchObject({ cache: other.url, verdict: 'CHALLENGE_VERDICT_MISSING' });
    // The hashes are each cache's: kiln's from its narinfo, the other's from the one Nix wrote.
    const theirs = nix('nix-store', ['--query', '--hash', out.differs]).toString().trim();
    const kilns = report.paths.find((x) => x.storePath === out.differs)!.narHash;
    expect(verdictOf(out.differs)!.narHash).toBe(theirs);
    expect(kilns).not.toBe(theirs);
    expect(report.summaries).toEqual([{ cache: other.url, matches: 1, mismatches: 1, missing: 1, errors: 0 }]);

    const text = await runCli(['qa', 'challenge', '--upstream', other.url], cliEnv(t));
    expect(text.code).toBe(2);
    expect(text.stdout).toContain(`match    ${out.same} ${other.url}`);
    expect(text.stdout).toContain(`mismatch ${out.differs}\n  kiln            ${kilns}\n  ${other.url} ${theirs}\n`);
    expect(text.stdout).toContain(`missing  ${out.missing} ${other.url}`);
    expect(text.stdout).toContain(`${other.url}: 3 path(s) built by kiln: 1 identical, 1 different, 1 missing there, 0 unanswered`);
  }, 60_000);

  test('the API challenges the configured upstreams by default, filters by tag, and a cache that does not answer is an error per path', async () => {
    const configured = await t.admin.challengeCaches({});
    expect(configured.summaries).toEqual([expect.objectContaining({ cache: other.url, matches: 1, mismatches: 1, missing: 1, errors: 0 })]);

    const tagged = await t.admin.challengeCaches({ tags: [{ key: 'qa', value: 'yes' }] });
    expect(tagged.paths.map((p) => p.storePath).sort()).toEqual([out.same, out.differs].sort());

    // Nothing listens there: every path is an error for it, and the other cache still answers.
    const dead = `http://127.0.0.1:${await freePort()}`;
    const both = await t.admin.challengeCaches({ caches: [other.url, dead] });
    expect(both.summaries.map((s) => [s.cache, s.matches, s.mismatches, s.missing, s.errors])).toEqual([[other.url, 1, 1, 1, 0], [dead, 0, 0, 0, 3]]);
    const deadVerdict = both.paths[0]!.verdicts[1]!;
    expect(deadVerdict.verdict).toBe(ChallengeVerdict.ERROR);
    expect(deadVerdict.reason).toMatch(/ECONNREFUSED/);
    // A URL given that is no configured upstream has no keys: its narinfos are not called trusted.
    expect(both.paths.every((p) => p.verdicts[1]!.trusted === false)).toBe(true);
  }, 60_000);

  test('a cache that is no URL, or given twice, is refused with the reason', async () => {
    const bad = await runCli(['qa', 'challenge', '--upstream', 'ftp://x'], cliEnv(t));
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('caches[0]: ftp://x must be http:// or https://');
    const twice = await runCli(['qa', 'challenge', '--upstream', other.url, '--upstream', `${other.url}/`], cliEnv(t));
    expect(twice.stderr).toContain(`caches[1]: ${other.url} is given twice`);
  }, 60_000);
});
