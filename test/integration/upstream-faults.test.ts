// What the coordinator does with each kind of upstream answer, through a real HTTP
// server as the upstream and the real lookups: a trusted narinfo makes the waiting build
// ready with no build below it; a tampered, untrusted or garbage one counts as absent (the
// input is built by kiln); a 500 or an upstream that is down decides nothing (the build
// waits, nothing is built for the input) until it answers again.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { eq, inArray } from 'drizzle-orm';
import { parseUpstreams } from '../../src/cache/upstreams/upstream-list.js';
import { builds, upstreamLookups } from '../../src/db/schema.js';
import type { Derivation } from '../../src/store/derivation.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { generateNixKey, renderNixPublicKey } from '../../src/store/nix-signature.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus-text.js';
import { signedNarInfo } from '../helpers/narinfo-upstream.js';
import { freePort } from '../helpers/upstream-cache.js';
import { waitForBuilds } from '../helpers/wait.js';

const SYSTEM = 'x86_64-linux';
type Answer = { status: number; body: string };

describe.each(DATABASE_KINDS)('upstream faults on %s', (kind) => {
  const trusted = generateNixKey('trusted-upstream-1');
  const stranger = generateNixKey('stranger-1');
  /** What the upstream answers, by hash part; 404 for the rest. */
  const answers = new Map<string, Answer>();
  let server: Server;
  let port: number;
  let t: TestCoordinator;
  let url: string;

  const listen = () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const close = () => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });

  beforeAll(async () => {
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    server = createServer((req, res) => {
      const answer = answers.get(/^\/([0-9a-z]{32})\.narinfo$/.exec(req.url ?? '')?.[1] ?? '');
      res.writeHead(answer?.status ?? 404, { 'content-type': 'text/x-nix-narinfo' });
      res.end(answer?.body ?? '404');
    });
    await listen();
    t = await startTestCoordinator(kind, {
      upstreams: parseUpstreams([{ url, publicKeys: [renderNixPublicKey(trusted.publicKey)], for: 'outputs' }]),
      // Errors are asked about again soon, so that "comes back" is quick to see.
      upstreamLifetimes: { errorMs: 200 },
      upstreamPollMs: 100,
    });
  });
  afterAll(async () => {
    await t?.stop();
    if (server.listening) await close();
  });

  const db = () => t.coordinator.database.db;
  const buildsOf = async (drvs: string[]) => (await db().select({ drv: builds.derivationPath }).from(builds).where(inArray(builds.derivationPath, drvs))).map((b) => b.drv);
  const waiting = async (id: string) => (await db().select({ waiting: builds.waiting }).from(builds).where(eq(builds.id, id)))[0]!.waiting;
  const lookup = async (path: string) => (await db().select().from(upstreamLookups).where(eq(upstreamLookups.path, path)))[0];
  const until = (what: string, check: () => Promise<boolean>) =>
    waitForBuilds(t.coordinator, check, 20_000, async () => what);

  test('a narinfo signed by the trusted key makes the waiting build ready; nothing below it is built', async () => {
    const chain = await submitChainAnswering((midOut) => ({ status: 200, body: signedNarInfo(midOut, trusted) }));
    await until('the top to be ready', async () => (await waiting(chain.top)) === 0);
    expect(await buildsOf([chain.mid, chain.leaf])).toEqual([]);
    expect((await lookup(chain.midOut))?.outcome).toBe('hit');
  });

  for (const [name, answer, reason] of [
    ['a tampered narinfo (NarSize changed after signing)', (p: string) => ({ status: 200, body: signedNarInfo(p, trusted).replace('NarSize: 120', 'NarSize: 121') }), /no valid signature by a trusted key/],
    ['a narinfo signed by a key not trusted for the upstream', (p: string) => ({ status: 200, body: signedNarInfo(p, stranger) }), /signed by stranger-1/],
    ['garbage', () => ({ status: 200, body: '<html>\u0000 not a narinfo' }), /not a narinfo/],
  ] as const) {
    test(`${name} counts as absent: kiln builds the input`, async () => {
      const chain = await submitChainAnswering(answer);
      await until('a build for mid', async () => (await buildsOf([chain.mid])).length === 1);
      const row = await lookup(chain.midOut);
      expect(row?.outcome).toBe('miss');
      expect(row?.reason).toMatch(reason);
      expect(await waiting(chain.top)).toBe(1);
    });
  }

  test('an upstream answering 500 decides nothing: the build waits, nothing is built for the input, until it answers', async () => {
    const chain = await submitChainAnswering(() => ({ status: 500, body: 'busy' }));
    await until('an error answer', async () => (await lookup(chain.midOut))?.outcome === 'error');
    expect((await lookup(chain.midOut))?.reason).toMatch(/HTTP 500/);
    expect(await buildsOf([chain.mid, chain.leaf])).toEqual([]);
    answers.set(parseStorePath(chain.midOut).hashPart, { status: 200, body: signedNarInfo(chain.midOut, trusted) });
    await until('the top to be ready', async () => (await waiting(chain.top)) === 0);
    expect(await buildsOf([chain.mid, chain.leaf])).toEqual([]);
    const metrics = parsePrometheusText(await (await fetch(`${t.coordinator.url}/metrics`)).text());
    expect(sampleValue(metrics, 'kiln_upstream_lookups_total', { upstream: url, outcome: 'error' })).toBeGreaterThanOrEqual(1);
  });

  test('an upstream that is down, then back: the build waits, then becomes ready from it', async () => {
    await close();
    let chain: Awaited<ReturnType<typeof submitChainAnswering>>;
    try {
      chain = await submitChainAnswering((p) => ({ status: 200, body: signedNarInfo(p, trusted) }));
      await until('an error answer', async () => (await lookup(chain.midOut))?.outcome === 'error');
      expect((await lookup(chain.midOut))?.reason).toMatch(/ECONNREFUSED/);
      expect(await waiting(chain.top)).toBe(1);
    } finally {
      await listen();
    }
    await until('the top to be ready', async () => (await waiting(chain.top)) === 0);
    expect(await buildsOf([chain.mid, chain.leaf])).toEqual([]);
  });

  /** Submits a chain whose mid output the upstream answers for as `answer` says. */
  async function submitChainAnswering(answer: (midOut: string) => Answer) {
    const chain = await prepare();
    answers.set(parseStorePath(chain.midOut).hashPart, answer(chain.midOut));
    return chain.submit();
  }

  /** top ← mid ← leaf, fresh names; submitted from the top (missing inputs as kiln decides). */
  async function prepare() {
    const nonce = randomUUID().slice(0, 8);
    const known = new Map<string, Derivation>();
    const make = (name: string, inputs: string[]) => {
      const d = makeDerivation({ name: `${name}-${nonce}`, system: SYSTEM, builder: '/bin/sh', inputDrvs: new Map(inputs.map((p) => [p, ['out']])) }, '/nix/store', known);
      known.set(d.path, d.drv);
      return d;
    };
    const leaf = make('leaf', []);
    const mid = make('mid', [leaf.path]);
    const top = make('top', [mid.path]);
    const midOut = mid.outputs.get('out')!;
    return {
      midOut,
      async submit() {
        const { build } = await t.admin.submitBuild({
          derivationPath: top.path,
          derivations: [top, mid, leaf].map((d) => ({ path: d.path, text: Buffer.from(d.text) })),
        });
        return { top: build!.id, midOut, mid: mid.path, leaf: leaf.path };
      },
    };
  }
});
