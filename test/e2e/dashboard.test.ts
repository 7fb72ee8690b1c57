// The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core,
// opens the link the coordinator prints (with the read-only token), shows the queue, the
// agent and a build this test submitted, and that build's page with its trace id.
// Screenshots go to $KILN_ARTIFACTS_DIR (CI keeps them; .ci/run prints where).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { buildTraceId } from '../../src/telemetry/build-trace.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { closureOf, shDrv } from '../helpers/derivations.js';
import { instantiate } from '../helpers/nix.js';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = process.env.KILN_ARTIFACTS_DIR ?? join(tmpdir(), 'kiln-artifacts');

describe('the dashboard in headless Chromium', () => {
  let t: TestCoordinator;
  let agent: TestAgentStream;
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
