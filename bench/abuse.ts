// `npm run bench -- --only abuse`: a coordinator process (default limits, PGlite) sent
// each hostile input in turn, while /healthz is asked every 5 ms: the coordinator's own
// event-loop delay (prom-client's monitorEventLoopDelay, nodejs_eventloop_lag_max_seconds
// in /metrics, reset at each scrape) and /healthz latency, p99 and max, during each.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import { agentClient } from '../src/agent/agent.js';
import { createAdminClient } from '../sdk/typescript/src/index.js';
import { makeDerivation } from '../src/store/make-derivation.js';
import { startCoordinatorProcess } from '../test/helpers/coordinator-process.js';

export interface AbuseRow {
  input: string;
  /** What the coordinator answered. */
  answer: string;
  answerMs: number;
  loopDelayMaxMs: number;
  healthP99Ms: number;
  healthMaxMs: number;
}

const MiB = 1 << 20;
const HASH_CHARS = '0123456789abcdfghijklmnpqrsvwxyz';

function sourcePaths(n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    let h = '';
    for (let k = 0, x = i; k < 32; k++, x = Math.floor(x / 32)) h += HASH_CHARS[x % 32];
    return `/nix/store/${h}-src${i}`;
  });
}

function drvWithSources(name: string, n: number) {
  const d = makeDerivation({ name, system: 'x86_64-linux', builder: '/bin/sh', inputSrcs: sourcePaths(n) }, '/nix/store', new Map());
  return { derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }], priority: 0 };
}

/** A gRPC call by hand: a length prefix for `bytes`, then that many bytes written as fast as the server takes them. */
function rawCall(url: string, path: string, headers: Record<string, string>, bytes: number): Promise<string> {
  return new Promise((resolve) => {
    const session = http2Connect(url);
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    stream.on('error', () => undefined);
    const done = (status: string) => {
      session.destroy();
      resolve(status);
    };
    stream.once('response', (h) => h['grpc-status'] !== undefined && done(`${Code[Number(h['grpc-status'])]}: ${decodeURIComponent(String(h['grpc-message']))}`));
    stream.once('trailers', (h) => done(`${Code[Number(h['grpc-status'])]}: ${decodeURIComponent(String(h['grpc-message']))}`));
    stream.once('close', () => done('stream closed'));
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(bytes, 1);
    stream.write(prefix);
    const chunk = Buffer.alloc(MiB, 1);
    let left = bytes;
    const pump = () => {
      while (left > 0 && !stream.destroyed) {
        left -= chunk.length;
        if (!stream.write(chunk)) return void stream.once('drain', pump);
      }
      if (!stream.destroyed) stream.end();
    };
    pump();
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function benchAbuse(): Promise<AbuseRow[]> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kiln-bench-abuse-'));
  const coordinator = await startCoordinatorProcess({ dataDir });
  const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  const admin = createAdminClient(coordinator.url, token);
  const { agent } = await admin.createAgent({ name: 'abused' });
  const loopMax = async () => {
    const text = await (await fetch(`${coordinator.url}/metrics`)).text();
    return 1000 * Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text)?.[1] ?? NaN);
  };
  const answerOf = async (call: () => Promise<unknown>) => {
    try {
      await call();
      return 'accepted';
    } catch (err) {
      const e = ConnectError.from(err);
      return `${Code[e.code]}: ${e.rawMessage.slice(0, 90)}`;
    }
  };
  // Made before any measurement: the probe shares this process's event loop.
  const s200k = drvWithSources('s200k', 200_000);
  const s6k = drvWithSources('s6k', 6_000);
  const s4900 = drvWithSources('s4900', 4_900);
  const tagged = { ...drvWithSources('tags', 1), tags: Array.from({ length: 100_000 }, (_, i) => ({ key: `k${i}`, value: 'v' })) };
  const inputs: { input: string; send: () => Promise<string> }[] = [
    { input: '.drv with 200,000 input sources (10.7 MB)', send: () => answerOf(() => admin.submitBuild(s200k)) },
    { input: '.drv with 6,000 input sources (over the count)', send: () => answerOf(() => admin.submitBuild(s6k)) },
    { input: '.drv with 4,900 input sources (accepted)', send: () => answerOf(() => admin.submitBuild(s4900)) },
    { input: '100,000 tags on one build (SubmitBuilds)', send: () => answerOf(() => admin.submitBuilds({ builds: [tagged] })) },
    { input: '200 MB SubmitBuild, wrong token', send: () => rawCall(coordinator.url, '/kiln.v1.AdminService/SubmitBuild', { authorization: 'Bearer wrong' }, 200 * MiB) },
    { input: '200 MB SubmitBuild, right token', send: () => rawCall(coordinator.url, '/kiln.v1.AdminService/SubmitBuild', { authorization: `Bearer ${token}` }, 200 * MiB) },
    { input: '200 MB QueryUpload, wrong agent password', send: () => rawCall(coordinator.url, '/kiln.v1.AgentService/QueryUpload', { 'x-kiln-agent-id': agent!.id, 'x-kiln-agent-password': 'guess' }, 200 * MiB) },
    {
      input: '20 password guesses for one agent',
      send: async () => {
        let last = '';
        for (let i = 0; i < 20; i++) last = await answerOf(() => agentClient(coordinator.url, agent!.id, `guess-${i}`).queryUpload({ buildId: '00000000-0000-4000-8000-000000000000', outputName: 'out' }));
        return last;
      },
    },
  ];
  const rows: AbuseRow[] = [];
  try {
    for (const { input, send } of inputs) {
      await loopMax(); // resets the coordinator's histogram
      const latencies: number[] = [];
      let probing = true;
      const probe = (async () => {
        while (probing) {
          const started = performance.now();
          await (await fetch(`${coordinator.url}/healthz`)).text();
          latencies.push(performance.now() - started);
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      const started = performance.now();
      const answer = await send();
      const answerMs = performance.now() - started;
      probing = false;
      await probe;
      const loopDelayMaxMs = await loopMax();
      latencies.sort((a, b) => a - b);
      const row = { input, answer, answerMs, loopDelayMaxMs, healthP99Ms: percentile(latencies, 99), healthMaxMs: latencies[latencies.length - 1] ?? 0 };
      console.log(`${input}: ${answer} in ${answerMs.toFixed(0)} ms; loop delay max ${loopDelayMaxMs.toFixed(0)} ms, /healthz p99 ${row.healthP99Ms.toFixed(1)} max ${row.healthMaxMs.toFixed(1)} ms`);
      rows.push(row);
    }
  } finally {
    await coordinator.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return rows;
}
