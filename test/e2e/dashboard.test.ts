// The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core,
// opens the link the coordinator prints (with the read-only token), shows the queue, the
// agent and a build this test submitted, and that build's page with its trace id.
// A second test fills the farm past one page of builds and clicks through it: paging,
// filters, newest first, a link to an input and back from its dependants, the log's tail,
// folded tags, and the charts of the last hours with their data points.
// Screenshots go to $KILN_ARTIFACTS_DIR (CI keeps them; .ci/run prints where).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { BuildResult } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { uploadLog } from '../../src/agent/uploader.js';
import { silentLogger } from '../../src/logger.js';
import { buildTraceId } from '../../src/telemetry/build-trace.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { closureOf, shDrv } from '../helpers/derivations.js';
import { buildByHand, DerivationMaker } from '../helpers/hand-builds.js';
import { instantiate } from '../helpers/nix.js';
import { waitForBuilds, waitUntil } from '../helpers/wait.js';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = process.env.KILN_ARTIFACTS_DIR ?? join(tmpdir(), 'kiln-artifacts');

describe('the dashboard in headless Chromium', () => {
  let t: TestCoordinator;
  let agent: TestAgentStream;
  let other: TestAgentStream | undefined;
  let browser: BrowserContext;
  let profile: string;

  beforeAll(async () => {
    t = await startTestCoordinator('pglite', { submitMissingInputs: false });
    profile = mkdtempSync(join(tmpdir(), 'kiln-chromium-'));
    // A fresh profile each run (--user-data-dir, which playwright passes for a persistent context).
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 900 } });
    mkdirSync(ARTIFACTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await agent?.close();
    await other?.close();
    await t?.stop();
    rmSync(profile, { recursive: true, force: true });
  });

  test('shows the queue, the agent and a submitted build, and the build\'s page with its trace id', async () => {
    const nonce = randomUUID().slice(0, 8);
    const [running, waiting] = instantiate(`[ (${shDrv(`dash-running-${nonce}`, 'echo a > $out')}) (${shDrv(`dash-waiting-${nonce}`, 'echo b > $out')}) ]`);
    const first = (await t.admin.submitBuild({ derivationPath: running!, derivations: closureOf(running!), priority: 5 })).build!;
    const second = (await t.admin.submitBuild({ derivationPath: waiting!, derivations: closureOf(waiting!) })).build!;
    // One slot: the higher priority build is allocated, the other waits.
    agent = await connectTestAgent(t, { maxParallel: 1 });
    expect((await agent.nextAssignment()).buildId).toBe(first.id);

    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    await page.goto(`${t.coordinator.url}/dashboard/#token=${t.coordinator.dashboardToken}`);

    const row = page.locator(`#builds tr[data-build-id="${second.id}"]`);
    await row.waitFor({ timeout: 20_000 });
    expect(await row.innerText()).toContain(`dash-waiting-${nonce}`);
    expect(await row.innerText()).toContain('scheduled');
    expect(await page.locator(`#builds tr[data-build-id="${first.id}"]`).innerText()).toContain('allocated');
    // The token left the address bar once taken.
    expect(page.url()).not.toContain(t.coordinator.dashboardToken);
    const queue = await page.locator('#queue').innerText();
    expect(queue).toMatch(/1\s+scheduled/);
    expect(queue).toMatch(/1\s+allocated/);
    expect(queue).toMatch(/1\s+agents connected/);
    const agents = await page.locator('#agents').innerText();
    expect(agents).toContain(agent.agentId.slice(0, 8));
    expect(agents).toContain('connected');
    expect(agents).toContain('0 / 1');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-overview.png'), fullPage: true });

    // The build's page: its fields, outputs and the trace id of its attempt.
    await row.locator('a').click();
    await page.locator('#build-fields').waitFor({ timeout: 10_000 });
    await page.goto(`${t.coordinator.url}/dashboard/#/build/${first.id}`);
    await page.locator('#attempts').waitFor({ timeout: 10_000 });
    expect(await page.locator('#trace-id').innerText()).toBe(buildTraceId(first.id, 1));
    expect(await page.locator('#outputs').innerText()).toContain(first.outputs[0]!.path);
    expect(await page.locator('#attempts').innerText()).toContain('not started yet');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-build.png'), fullPage: true });
    // The waiting build's page says why it waits: the one agent's only slot is taken.
    await page.goto(`${t.coordinator.url}/dashboard/#/build/${second.id}`);
    await page.locator('#wait-reason').waitFor({ timeout: 10_000 });
    expect(await page.locator('#wait-reason').innerText()).toBe('ready: waiting for a free slot on 1 agent connected to this coordinator that can build it');
    expect(await page.locator('#wait-reason').getAttribute('data-kind')).toBe('WAIT_KIND_FREE_SLOT');
    console.log(`dashboard screenshots in ${ARTIFACTS}`);
    expect(problems).toEqual([]);
  }, 120_000);

  test('pages, filters and links through many builds, with the log\'s tail and the charts of the last hours', async () => {
    const nonce = randomUUID().slice(0, 8);
    // A system of its own, so that nothing of the first test goes to this agent.
    const system = `dash${nonce}-linux`;
    const nobody = { key: 'need', value: `nobody-${nonce}` };
    const maker = new DerivationMaker();
    const script = (text: string) => ['-c', `echo ${text} > $out`];
    other = await connectTestAgent(t, { systems: [system], maxParallel: 1 });
    const leaf = maker.make({ name: `dash-leaf-${nonce}`, system, args: script('leaf') });
    const built = await buildByHand(t, other, maker, leaf);

    // A failure with a long message and a log of 300 lines.
    const failing = maker.make({ name: `dash-fail-${nonce}`, system, args: script('fail') });
    const failed = (await t.admin.submitBuild({ derivationPath: failing.path, derivations: maker.closure(failing) })).build!;
    expect((await other.nextAssignment()).buildId).toBe(failed.id);
    const dir = mkdtempSync(join(tmpdir(), 'kiln-dash-log-'));
    writeFileSync(join(dir, 'build.log'), Array.from({ length: 300 }, (_, i) => `log line ${i + 1}`).join('\n') + '\n');
    await uploadLog({ client: agentClient(t.coordinator.url, other.agentId, other.password), signal: new AbortController().signal, log: silentLogger() }, failed.id, join(dir, 'build.log'));
    const message = Array.from({ length: 40 }, (_, i) => `message line ${i + 1}`).join('\n');
    other.send({ case: 'buildFinished', value: { buildId: failed.id, result: BuildResult.FAILURE, outputs: [], message } });
    const stateOf = async (id: string) => (await t.admin.getBuild({ id })).build!.state;
    await waitForBuilds(t.coordinator, async () => (await stateOf(failed.id)) === BuildState.FAILED, 20_000, async () => `build ${failed.id} is ${BuildState[await stateOf(failed.id)]}`);
    rmSync(dir, { recursive: true, force: true });

    // 30 builds no connected agent offers a tag for (so they stay ready, unmatched), one
    // with many tags; then a build of a derivation that takes the leaf as an input.
    const pages = Array.from({ length: 30 }, (_, i) => maker.make({ name: `dash-page-${nonce}-${i}`, system, args: script(`page${i}`) }));
    const manyTags = Array.from({ length: 14 }, (_, i) => ({ key: `label${String(i).padStart(2, '0')}`, value: `v${i}` }));
    const { builds: submitted } = await t.admin.submitBuilds({
      builds: pages.map((d, i) => ({ derivationPath: d.path, derivations: maker.closure(d), tags: i === 7 ? [nobody, ...manyTags] : [nobody] })),
    });
    const top = maker.make({ name: `dash-top-${nonce}`, system, args: script('top'), inputDrvs: new Map([[leaf.path, ['out']]]) });
    const topBuild = (await t.admin.submitBuild({ derivationPath: top.path, derivations: maker.closure(top), tags: [nobody] })).build!;

    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    // What the farm holds besides this test's builds (the first test's), as the API says.
    const total = (await t.admin.listBuilds({ pageSize: 1000 })).builds.length;
    const summary = await t.admin.getQueueSummary({});
    const scheduled = summary.counts.filter((c) => c.state === BuildState.SCHEDULED).reduce((a, c) => a + c.count, 0);
    const allocated = summary.counts.filter((c) => c.state === BuildState.ALLOCATED).reduce((a, c) => a + c.count, 0);
    const matching = summary.ready.reduce((a, r) => a + r.matchingConnected, 0);
    expect(summary.ready.find((r) => r.system === system)).toMatchObject({ count: 31, matchingConnected: 0 });
    await page.goto(`${t.coordinator.url}/dashboard/#token=${t.coordinator.dashboardToken}`);
    const rows = page.locator('#builds tr[data-build-id]');
    const names = async () => (await rows.allInnerTexts()).map((r) => /dash-[a-z]+-[0-9a-f]{8}(-\d+)?/.exec(r)?.[0] ?? r);
    await page.locator(`#builds tr[data-build-id="${topBuild.id}"]`).waitFor({ timeout: 20_000 });

    // Newest first: the last submitted on top, then the pages from the 30th down; 25 a page.
    const first = await names();
    expect(first.length).toBe(25);
    expect(first.slice(0, 3)).toEqual([`dash-top-${nonce}`, `dash-page-${nonce}-29`, `dash-page-${nonce}-28`]);
    expect(first[24]).toBe(`dash-page-${nonce}-6`);
    expect(await page.locator('#page-newer').isDisabled()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-builds-page-1.png'), fullPage: true });

    // The second page by its cursor: the rest, down to the first test's builds.
    await page.locator('#page-older').click();
    await page.locator('#page-number', { hasText: 'page 2' }).waitFor({ timeout: 10_000 });
    await waitForNames(page, (n) => n[0] === `dash-page-${nonce}-5`);
    const second = await names();
    expect(second.slice(0, 8)).toEqual([5, 4, 3, 2, 1, 0].map((i) => `dash-page-${nonce}-${i}`).concat([`dash-fail-${nonce}`, `dash-leaf-${nonce}`]));
    expect(second.length).toBe(total - 25);
    expect(await page.locator('#page-older').isDisabled()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-builds-page-2.png'), fullPage: true });
    await page.locator('#page-newer').click();
    await page.locator('#page-number', { hasText: 'page 1' }).waitFor({ timeout: 10_000 });
    await waitForNames(page, (n) => n[0] === `dash-top-${nonce}`);

    // Filters: the name's text, then the state, then a tag (paged again), then the system.
    await page.locator('#filter-q').fill(`page-${nonce}-1`);
    await page.locator('#filter-apply').click();
    await waitForNames(page, (n) => n.length === 11);
    expect(await names()).toEqual([19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 1].map((i) => `dash-page-${nonce}-${i}`));
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-builds-filtered.png'), fullPage: true });
    await page.locator('#filter-clear').click();
    await page.locator('#state-filter').selectOption('failed');
    await waitForNames(page, (n) => n.length === 1);
    expect(await names()).toEqual([`dash-fail-${nonce}`]);
    await page.locator('#state-filter').selectOption('');
    await page.locator('#filter-tag').fill(`need=nobody-${nonce}`);
    await page.locator('#filter-apply').click();
    await waitForNames(page, (n) => n.length === 25 && n[0] === `dash-top-${nonce}`);
    await page.locator('#page-older').click();
    await waitForNames(page, (n) => n.length === 6);
    expect(await names()).toEqual([5, 4, 3, 2, 1, 0].map((i) => `dash-page-${nonce}-${i}`));
    await page.goto(`${t.coordinator.url}/dashboard/#/?system=${system}&state=succeeded`);
    await waitForNames(page, (n) => n.length === 1);
    expect(await names()).toEqual([`dash-leaf-${nonce}`]);

    // The queue tells ready builds an agent here could take from those none offers.
    await page.goto(`${t.coordinator.url}/dashboard/#/`);
    await page.locator('#ready-unmatched').waitFor({ timeout: 10_000 });
    const readyAll = summary.ready.reduce((a, r) => a + r.count, 0);
    expect(await page.locator('#ready-unmatched').innerText()).toMatch(new RegExp(`^${readyAll - matching}\\s`));
    expect(await page.locator('#ready-matching').innerText()).toMatch(new RegExp(`^${matching}\\s`));

    // The charts, with their data points: now, the queue as GetQueueSummary counts it; a
    // build succeeded and one failed this minute; the first agent holds a build (since the
    // first test), the second held two for a moment, one after the other.
    const lastOf = async (selector: string) => Number(await page.locator(selector).last().getAttribute('data-value'));
    await page.locator('#chart-queue').waitFor({ timeout: 10_000 });
    expect(await page.locator('#chart-queue circle[data-series="scheduled"]').count()).toBeGreaterThan(10);
    expect(await lastOf('#chart-queue circle[data-series="scheduled"]')).toBe(scheduled);
    expect(await lastOf('#chart-queue circle[data-series="allocated"]')).toBe(allocated);
    expect(await lastOf('#chart-finished rect[data-series="succeeded"]')).toBeGreaterThanOrEqual(1);
    expect(await lastOf('#chart-finished rect[data-series="failed"]')).toBeGreaterThanOrEqual(1);
    if (agent) {
      expect(await lastOf(`#chart-agent-${agent.agentId} circle`)).toBeGreaterThan(0);
      expect(await lastOf(`#chart-agent-${agent.agentId} circle`)).toBeLessThanOrEqual(1);
    }
    const held = (await page.locator(`#chart-agent-${other.agentId} circle`).evaluateAll((points) => points.map((p) => Number(p.getAttribute('data-value'))))).filter((v) => v > 0);
    expect(held.length).toBeGreaterThan(0);
    expect(held.every((v) => v <= 1)).toBe(true);
    await page.locator('#agent-slots').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-charts.png'), fullPage: true });

    // The agent's name, not its id, beside the build it holds.
    const agentName = (await t.admin.listAgents({})).agents.find((a) => a.id === other!.agentId)!.name;
    await page.goto(`${t.coordinator.url}/dashboard/#/?system=${system}&state=failed`);
    await waitForNames(page, (n) => n.length === 1);
    expect(await rows.first().innerText()).toContain(agentName);

    // From the top build to its input by the link, and back through the input's dependants.
    await page.goto(`${t.coordinator.url}/dashboard/#/build/${topBuild.id}`);
    await page.locator(`#inputs tr[data-derivation="${leaf.path}"] a`).click();
    await page.waitForURL(`**/#/build/${built.buildId}`);
    await page.locator(`#dependants tr[data-derivation="${top.path}"] a`).waitFor({ timeout: 10_000 });
    expect(await page.locator('#build-fields').innerText()).toContain(leaf.path);
    expect(await page.locator('#build-fields').innerText()).toContain(agentName);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-build-input.png'), fullPage: true });
    await page.locator(`#dependants tr[data-derivation="${top.path}"] a`).click();
    await page.waitForURL(`**/#/build/${topBuild.id}`);
    await page.locator('#wait-reason').waitFor({ timeout: 10_000 });
    expect(await page.locator('#wait-reason').getAttribute('data-kind')).toBe('WAIT_KIND_NO_MATCHING_AGENT');
    expect(await page.locator('#wait').innerText()).toMatch(new RegExp(`no agent offers the tags\\s+need=nobody-${nonce}`));

    // The failed build: its message and its log as monospace tails, the whole log on request.
    await page.goto(`${t.coordinator.url}/dashboard/#/build/${failed.id}`);
    const log = page.locator('#log');
    await log.waitFor({ timeout: 10_000 });
    expect(await log.getAttribute('data-lines')).toBe('200');
    expect(await log.innerText()).toMatch(/^… 100 lines above\nlog line 101\n[^]*log line 300$/);
    expect(await page.locator('#attempts pre.message').first().innerText()).toMatch(/^… 28 lines above\nmessage line 29\n[^]*message line 40$/);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-build-failed.png'), fullPage: true });
    await page.locator('#log-toggle').click();
    await page.locator('#log[data-lines="300"]').waitFor({ timeout: 10_000 });
    expect(await log.innerText()).toMatch(/^log line 1\n[^]*log line 300\n?$/);

    // Many tags are folded behind "7 more tags"; opened, the fold stays open through refreshes.
    await page.goto(`${t.coordinator.url}/dashboard/#/build/${submitted[7]!.build!.id}`);
    const fold = page.locator('#build-tags-more');
    await fold.waitFor({ timeout: 10_000 });
    expect(await page.locator('#build-tags > a.tag').count()).toBe(8);
    expect(await fold.locator('summary').innerText()).toBe('7 more tags');
    await fold.locator('summary').click();
    const status = await page.locator('#status').innerText();
    await page.locator('#status').filter({ hasNotText: status }).waitFor({ timeout: 10_000 });
    expect(await fold.getAttribute('open')).not.toBeNull();
    expect(await fold.locator('a.tag').count()).toBe(7);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-build-tags.png'), fullPage: true });
    expect(problems).toEqual([]);
  }, 180_000);

  test('the read-only token reads but may not change anything', async () => {
    const call = (method: string, body: object) =>
      fetch(`${t.coordinator.url}/kiln.v1.AdminService/${method}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${t.coordinator.dashboardToken}` },
        body: JSON.stringify(body),
      });
    expect((await call('ListAgents', {})).status).toBe(200);
    const refused = await call('CreateAgent', { name: 'not allowed' });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { message: string }).message).toContain('needs the admin token');
  });
});

/** Waits until the rows' derivation names satisfy `check` (the list redraws on its own). */
async function waitForNames(page: Page, check: (names: string[]) => boolean): Promise<void> {
  let last: string[] = [];
  const names = () => page.locator('#builds tr[data-build-id]').evaluateAll((rows) => rows.map((r) => /dash-[a-z]+-[0-9a-f]{8}(-\d+)?/.exec((r as unknown as { innerText: string }).innerText)?.[0] ?? ''));
  await waitUntil(async () => check((last = await names())), 10_000, () => `the builds list shows ${JSON.stringify(last)}`, 100);
}
