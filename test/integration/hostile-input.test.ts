import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { connect as http2Connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { create, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { SubmitBuildRequestSchema } from '../../gen/kiln/v1/admin_pb.js';
import { count } from 'drizzle-orm';
import { agentClient } from '../../src/agent/agent.js';
import { agents, builds, buildTags, derivationSources, derivations, events } from '../../src/db/schema.js';
import { LoginThrottle } from '../../src/coordinator/login-throttle.js';
import { inputLimits } from '../../src/protocol/limits.js';
import { makeDerivation, type MadeDerivation } from '../../src/store/make-derivation.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';

const KiB = 1 << 10;
const MiB = 1 << 20;

/** Small limits, so that each hostile input is cheap to make; the checks are the same at any size. */
const LIMITS = inputLimits({
  messageBytes: { SubmitBuild: 2 * MiB, SubmitBuilds: 8 * MiB },
  defaultMessageBytes: 64 * KiB,
  derivation: { bytes: 1 * MiB, inputSrcs: 1_000, inputDrvs: 1_000, env: 1_000, outputs: 8, args: 1_000 },
  tagsPerBuild: 16,
  tagsPerAgent: 16,
});

const HASH_CHARS = '0123456789abcdfghijklmnpqrsvwxyz';
function sourcePaths(n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    let h = '';
    for (let k = 0, x = i; k < 32; k++, x = Math.floor(x / 32)) h += HASH_CHARS[x % 32];
    return `/nix/store/${h}-src${i}`;
  });
}

function made(name: string, spec: { inputSrcs?: string[]; env?: Record<string, string> } = {}): MadeDerivation {
  return makeDerivation({ name, system: 'x86_64-linux', builder: '/bin/sh', ...spec }, '/nix/store', new Map());
}

const own = (d: MadeDerivation) => ({ derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }], priority: 0 });

async function rowCounts(t: TestCoordinator) {
  const { db } = t.coordinator.database;
  const n = async (table: typeof builds | typeof derivations | typeof derivationSources | typeof buildTags | typeof events | typeof agents) =>
    Number((await db.select({ n: count() }).from(table))[0]!.n);
  return { builds: await n(builds), derivations: await n(derivations), sources: await n(derivationSources), tags: await n(buildTags), events: await n(events), agents: await n(agents) };
}

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

/** Opens a gRPC call by hand and writes only the first part of its body; resolves with the response headers. */
function openUnaryCall(url: string, path: string, headers: Record<string, string>, declaredBytes: number): { session: ClientHttp2Session; response: Promise<IncomingHttpHeaders>; sent: () => number } {
  const session = http2Connect(url);
  session.on('error', () => undefined);
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
  stream.on('error', () => undefined);
  // A length prefix promising a large message, then 256 KiB of it: never the whole.
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(declaredBytes, 1);
  let sent = 0;
  stream.write(prefix);
  stream.write(Buffer.alloc(256 * KiB, 7), () => (sent += 256 * KiB));
  const response = new Promise<IncomingHttpHeaders>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('close', () => reject(new Error('stream closed without a response')));
  });
  return { session, response, sent: () => sent };
}

describe.each(DATABASE_KINDS)('hostile input on %s', (kind) => {
  let t: TestCoordinator;
  let now = 0;
  beforeAll(async () => {
    t = await startTestCoordinator(kind, { limits: LIMITS, loginThrottle: new LoginThrottle({ now: () => now }), idleTimeouts: { firstRequestMs: 300, headersMs: 500 } });
  });
  afterAll(async () => {
    await t?.stop();
  });

  test('refuses an admin call without the token from its headers, before reading its body', async () => {
    const before = await rowCounts(t);
    const call = openUnaryCall(t.coordinator.url, '/kiln.v1.AdminService/SubmitBuild', { authorization: 'Bearer wrong' }, 200 * MiB);
    const headers = await call.response;
    call.session.destroy();
    // Trailers-only: the status is in the headers, while the client has sent a fraction of its body.
    expect(headers['grpc-status']).toBe(String(Code.Unauthenticated));
    expect(decodeURIComponent(String(headers['grpc-message']))).toBe('wrong admin token');
    expect(await rowCounts(t)).toEqual(before);
  });

  test('refuses an agent call with a wrong password before reading its body', async () => {
    const { agent } = await t.admin.createAgent({ name: 'body-check' });
    const call = openUnaryCall(t.coordinator.url, '/kiln.v1.AgentService/QueryUpload', { 'x-kiln-agent-id': agent!.id, 'x-kiln-agent-password': 'guess' }, 100 * MiB);
    const headers = await call.response;
    call.session.destroy();
    expect(headers['grpc-status']).toBe(String(Code.Unauthenticated));
    expect(decodeURIComponent(String(headers['grpc-message']))).toBe(`wrong id or password for agent ${agent!.id}`);
  });

  test('slows password guesses for an agent after five failures, and says until when', async () => {
    const { agent } = await t.admin.createAgent({ name: 'guessed' });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    const query = (pw: string) => agentClient(t.coordinator.url, agent!.id, pw).queryUpload({ buildId: '00000000-0000-4000-8000-000000000000', outputName: 'out' });
    for (let i = 0; i < 5; i++) expect((await refusal(query(`guess-${i}`))).code).toBe(Code.Unauthenticated);
    // Now even the right password waits: the guesser cannot tell which was right.
    const slowed = await refusal(query(password));
    expect(slowed.code).toBe(Code.ResourceExhausted);
    expect(slowed.rawMessage).toMatch(new RegExp(`too many failed logins \\(5 for agent ${agent!.id}\\): agent ${agent!.id} may try again in 1 s`));
    now += 1_001;
    // The password is checked again once the wait is over.
    expect((await refusal(query(password))).code).not.toBe(Code.Unauthenticated);
  });

  test('refuses a message over its method limit with RESOURCE_EXHAUSTED, and takes larger batches in SubmitBuilds', async () => {
    const before = await rowCounts(t);
    const big = made('big-env', { env: { blob: 'x'.repeat(3 * MiB) } });
    const single = await refusal(t.admin.submitBuild(own(big)));
    expect(single.code).toBe(Code.ResourceExhausted);
    expect(single.rawMessage).toMatch(/larger than configured readMaxBytes 2097152/);
    // Under SubmitBuilds' own limit the message is read; its .drv is then over the size limit.
    const batch = await refusal(t.admin.submitBuilds({ builds: [own(big)] }));
    expect(batch.code).toBe(Code.InvalidArgument);
    expect(batch.rawMessage).toMatch(/has 31\d{5} bytes; at most 1048576 are accepted \(limits\.derivation\.bytes\)/);
    // A read-only call gets the default limit.
    const get = await refusal(t.admin.getBuild({ id: 'x'.repeat(100 * KiB) }));
    expect(get.code).toBe(Code.ResourceExhausted);
    expect(await rowCounts(t)).toEqual(before);
  });

  test('refuses a .drv with more input sources than the limit, naming the limit', async () => {
    const before = await rowCounts(t);
    const drv = made('many-sources', { inputSrcs: sourcePaths(5_000) });
    const err = await refusal(t.admin.submitBuild(own(drv)));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/more than 1000 input sources, the most accepted .*\(limits\.derivation\.inputSrcs\)/);
    expect(await rowCounts(t)).toEqual(before);
  });

  test('refuses 100,000 tags on a build, naming the limit', async () => {
    const before = await rowCounts(t);
    const drv = made('many-tags');
    const tags = Array.from({ length: 100_000 }, (_, i) => ({ key: `k${i}`, value: 'v' }));
    // Over SubmitBuild's message limit as it is: sent in a batch, whose limit is larger.
    const err = await refusal(t.admin.submitBuilds({ builds: [{ ...own(drv), tags }] }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe('build: 100000 tags; at most 16 are accepted (limits.tagsPerBuild)');
    expect(await rowCounts(t)).toEqual(before);
  });

  test('refuses a tag with a lone surrogate as INVALID_ARGUMENT, in protobuf and in JSON', async () => {
    const before = await rowCounts(t);
    const drv = made('surrogate');
    // A lone surrogate as grpc-js and protobufjs encode it (ED A0 80), in place of "XYZ".
    const bytes = Buffer.from(toBinary(SubmitBuildRequestSchema, create(SubmitBuildRequestSchema, { ...own(drv), tags: [{ key: 'k', value: 'XYZ' }] })));
    const at = bytes.indexOf('XYZ');
    bytes.set([0xed, 0xa0, 0x80], at);
    const post = (contentType: string, body: Uint8Array | string) =>
      fetch(`${t.coordinator.url}/kiln.v1.AdminService/SubmitBuild`, { method: 'POST', headers: { 'content-type': contentType, authorization: `Bearer ${t.coordinator.adminToken}` }, body });
    const binary = await post('application/proto', bytes);
    expect(binary.status).toBe(400);
    expect(await binary.json()).toEqual({ code: 'invalid_argument', message: 'the request is not a valid protobuf message: TypeError: The encoded data was not valid for encoding utf-8' });
    // JSON can spell it too ("\ud800").
    const json = JSON.stringify({ ...own(drv), derivations: [{ path: drv.path, text: Buffer.from(drv.text).toString('base64') }], tags: [{ key: 'k', value: 'XYZ' }] }).replace('XYZ', '\\ud800');
    const text = await post('application/json', json);
    expect(text.status).toBe(400);
    expect(((await text.json()) as { code: string }).code).toBe('invalid_argument');
    expect(await rowCounts(t)).toEqual(before);
  });

  test('refuses a garbage protobuf as INVALID_ARGUMENT, over Connect and gRPC', async () => {
    const before = await rowCounts(t);
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    const res = await fetch(`${t.coordinator.url}/kiln.v1.AdminService/SubmitBuild`, {
      method: 'POST',
      headers: { 'content-type': 'application/proto', authorization: `Bearer ${t.coordinator.adminToken}` },
      body: garbage,
    });
    expect(res.status).toBe(400);
    const json = (await res.json()) as { code: string; message: string };
    expect(json.code).toBe('invalid_argument');
    expect(json.message).toMatch(/^the request is not a valid protobuf message: /);

    const session = http2Connect(t.coordinator.url);
    const stream = session.request({ ':method': 'POST', ':path': '/kiln.v1.AdminService/SubmitBuild', 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${t.coordinator.adminToken}` });
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(garbage.length, 1);
    stream.end(Buffer.concat([prefix, garbage]));
    const status = await new Promise<string>((resolve) => {
      stream.once('response', (h) => h['grpc-status'] !== undefined && resolve(String(h['grpc-status'])));
      stream.once('trailers', (h) => resolve(String(h['grpc-status'])));
    });
    stream.resume();
    session.close();
    expect(status).toBe(String(Code.InvalidArgument));
    expect(await rowCounts(t)).toEqual(before);
  });

  test('closes connections that never send a request', async () => {
    // Silent TCP: no bytes, so no protocol to choose.
    const silent = netConnect(t.coordinator.port, '127.0.0.1');
    silent.on('error', () => undefined);
    await new Promise<void>((resolve) => silent.once('close', () => resolve()));
    // An HTTP/2 session that opens no stream.
    const session = http2Connect(t.coordinator.url);
    session.on('error', () => undefined);
    await new Promise<void>((resolve) => session.once('close', () => resolve()));
    // HTTP/1.1 headers that never end.
    const slow = netConnect(t.coordinator.port, '127.0.0.1');
    slow.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    slow.on('error', () => undefined);
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      slow.on('data', (d: Buffer) => (text += d.toString()));
      slow.once('close', () => resolve(text));
    });
    // Closed, with a 408 or without a word: never answered as a request.
    expect(answer).not.toMatch(/200 OK/);
  });
});
