// AgentService through the real server over a socket, with a real Connect client acting
// as the agent: authentication, who may report and upload, resumable and refused
// uploads, stream replacement, and finishing a build once its outputs are in the cache.
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type Client } from '@connectrpc/connect';
import { count, eq } from 'drizzle-orm';
import { compressFrame } from 'lz4-napi';
import {
  AgentService,
  BuildResult,
  ConnectRequestSchema,
  ReportKind,
  type AssignBuild,
  type ConnectRequest,
  type ConnectResponse,
  type UploadHeaderSchema,
  type UploadOutputRequestSchema,
} from '../../gen/kiln/v1/agent_pb.js';
import { BuildState, type Build } from '../../gen/kiln/v1/types_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { lz4Frames, skipBytes } from '../../src/agent/uploader.js';
import { AsyncQueue } from '../../src/async-queue.js';
import { events } from '../../src/db/schema.js';
import { encodeBase32 } from '../../src/store/base32.js';
import { compressLz4Frame } from '../../src/store/lz4-frames.js';
import { dumpPath } from '../../src/store/nar-writer.js';
import { parseNarInfo, type NarInfo } from '../../src/store/narinfo.js';
import { countValidSignatures, parseNixPublicKey } from '../../src/store/nix-signature.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { chain, closureOf, SYSTEM } from '../helpers/derivations.js';
import { waitForBuilds } from '../helpers/wait.js';

type AgentClient = Client<typeof AgentService>;
type RequestMessage = NonNullable<MessageInitShape<typeof ConnectRequestSchema>['message']>;
type UploadRequest = MessageInitShape<typeof UploadOutputRequestSchema>;
type HeaderInit = MessageInitShape<typeof UploadHeaderSchema>;
type Responses = { [M in Exclude<ConnectResponse['message'], { case: undefined }> as M['case']]: M['value'] };
type ResponseCase = keyof Responses;
type ResponseValue<K extends ResponseCase> = Responses[K];

const WAIT_MS = 20_000;
/** Small chunks, so that a small tree makes a NAR of many frames. */
const CHUNK = 64 << 10;
/** The tests that need a build of their own; their derivations are made before the coordinator runs. */
const BUILDS = [
  'owner', 'resume', 'mismatch', 'frames', 'dotdot', 'dotdot-early', 'replace', 'finish', 'misreported', 'concurrent', 'twice-failure', 'twice-success',
  'inline', 'inline-mismatch', 'inline-dotdot', 'inline-large', 'inline-twice',
] as const;
type BuildTag = (typeof BUILDS)[number];

function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The error a call is refused with; fails the test if the call succeeds. */
async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await within(call, 'the call to be answered');
  } catch (err) {
    expect(err).toBeInstanceOf(ConnectError);
    return err as ConnectError;
  }
  throw new Error('the call was expected to be refused, but it succeeded');
}

function narHashOf(bytes: Uint8Array): string {
  return `sha256:${encodeBase32(createHash('sha256').update(bytes).digest())}`;
}

/** One NAR string: u64 LE length, the bytes, zero padding to a multiple of 8. */
function narString(s: string): Buffer {
  const bytes = Buffer.from(s);
  const out = Buffer.alloc(8 + bytes.length + ((8 - (bytes.length % 8)) % 8));
  out.writeBigUInt64LE(BigInt(bytes.length), 0);
  bytes.copy(out, 8);
  return out;
}

/** Runs a program without blocking the event loop the coordinator serves on. */
function run(cmd: string, args: string[], input?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${Buffer.concat(err).toString()}`)),
    );
    child.stdin.end(input);
  });
}

/** An output tree as a build might leave it: a script, incompressible data, a symlink. */
function makeOutputTree(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-output-'));
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'share'));
  writeFileSync(join(dir, 'bin', 'hello'), '#!/bin/sh\necho hello\n');
  chmodSync(join(dir, 'bin', 'hello'), 0o755);
  writeFileSync(join(dir, 'share', 'data'), randomBytes(600 << 10));
  writeFileSync(join(dir, 'share', 'empty'), '');
  symlinkSync('bin/hello', join(dir, 'hello'));
  return dir;
}

async function narChunks(dir: string): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of dumpPath(dir, { chunkSize: CHUNK })) chunks.push(chunk);
  return chunks;
}

/** The agent's end of one control stream, with every message the coordinator sent on it. */
class TestStream {
  private readonly outgoing = new AsyncQueue<ConnectRequest>();
  private readonly received: ConnectResponse[] = [];
  private readonly taken = new Set<number>();
  private readonly listeners = new Set<() => void>();
  private readonly abort = new AbortController();
  private finished = false;
  /** Resolves when the stream ends: undefined if it ended cleanly, else its error. */
  readonly ended: Promise<ConnectError | undefined>;

  constructor(client: AgentClient, heldBuildIds: string[] = []) {
    this.send({ case: 'hello', value: { systems: [SYSTEM], maxParallelBuilds: 1, version: 'test', heldBuildIds } });
    this.ended = (async () => {
      try {
        for await (const response of client.connect(this.outgoing, { signal: this.abort.signal })) {
          this.received.push(response);
          this.notify();
        }
        return undefined;
      } catch (err) {
        return ConnectError.from(err);
      } finally {
        this.finished = true;
        this.notify();
      }
    })();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  send(message: RequestMessage): void {
    this.outgoing.push(create(ConnectRequestSchema, { message }));
  }

  /** The next message of this kind (and matching) not taken yet, waited for with a bound. */
  take<K extends ResponseCase>(kind: K, match: (value: ResponseValue<K>) => boolean = () => true): Promise<ResponseValue<K>> {
    return new Promise<ResponseValue<K>>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      const check = () => {
        for (let i = 0; i < this.received.length; i++) {
          const m = this.received[i]!.message;
          const value = m.value as unknown as ResponseValue<K>;
          if (this.taken.has(i) || m.case !== kind || !match(value)) continue;
          this.taken.add(i);
          done();
          resolve(value);
          return;
        }
        if (this.finished) {
          done();
          void this.ended.then((err) => reject(new Error(`the control stream ended (${err?.message ?? 'cleanly'}) before a ${kind} arrived`)));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${kind} within ${WAIT_MS} ms; received: ${this.received.map((r) => r.message.case).join(', ') || 'nothing'}`));
      }, WAIT_MS);
      this.listeners.add(check);
      check();
    });
  }

  get open(): boolean {
    return !this.finished;
  }

  /** The error the coordinator ended the stream with (undefined: ended cleanly). */
  end(): Promise<ConnectError | undefined> {
    return within(this.ended, 'the control stream to end');
  }

  async cancel(): Promise<void> {
    this.outgoing.end();
    this.abort.abort();
    await this.ended;
  }
}

describe.each(DATABASE_KINDS)('AgentService over a socket on %s', (kind) => {
  let t: TestCoordinator;
  const leaves = new Map<BuildTag, string>();
  const streams: TestStream[] = [];
  const trees: string[] = [];

  beforeAll(async () => {
    // nix-instantiate runs synchronously: do it before the coordinator serves.
    for (const tag of BUILDS) leaves.set(tag, chain(`${kind}-agent-service-${tag}`).leaf);
    t = await startTestCoordinator(kind);
  });
  afterEach(async () => {
    await Promise.all(streams.splice(0).map((s) => s.cancel()));
    for (const dir of trees.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await t?.stop();
  });

  function openStream(client: AgentClient, heldBuildIds: string[] = []): TestStream {
    const s = new TestStream(client, heldBuildIds);
    streams.push(s);
    return s;
  }

  function outputTree(): string {
    const dir = makeOutputTree();
    trees.push(dir);
    return dir;
  }

  /** A new agent; its tag test=<tag> is what lets it take the builds of its own test only. */
  async function newAgent(tag: string) {
    const { agent } = await t.admin.createAgent({ name: `agent-${tag}`, tags: [{ key: 'test', value: tag }] });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    return { id: agent!.id, password, client: agentClient(t.coordinator.url, agent!.id, password) };
  }

  async function submitLeaf(tag: BuildTag): Promise<Build> {
    const leaf = leaves.get(tag)!;
    const { build } = await t.admin.submitBuild({ derivationPath: leaf, derivations: closureOf(leaf), tags: [{ key: 'test', value: tag }] });
    return build!;
  }

  /** An agent connected with a build of its own test assigned to it. */
  async function agentWithBuild(tag: BuildTag) {
    const agent = await newAgent(tag);
    const build = await submitLeaf(tag);
    const stream = openStream(agent.client);
    await stream.take('welcome');
    const assign: AssignBuild = await stream.take('assignBuild', (a) => a.buildId === build.id);
    expect(assign.outputs.map((o) => o.name)).toEqual(['out']);
    const output = assign.outputs[0]!;
    const header: HeaderInit = { buildId: build.id, outputName: output.name, storePath: output.path, offset: 0n, references: [] };
    return { agent, build, stream, assign, output, header };
  }

  async function getBuild(id: string): Promise<Build> {
    return (await t.admin.getBuild({ id })).build!;
  }

  function waitForState(id: string, state: BuildState): Promise<void> {
    return waitForBuilds(
      t.coordinator,
      async () => (await getBuild(id)).state === state,
      WAIT_MS,
      async () => `build ${id} to be ${BuildState[state]}; it is ${BuildState[(await getBuild(id)).state]}`,
    );
  }

  /** Reports the build succeeded with its output as uploaded: what serves an uploaded output. */
  async function succeedWith(held: { stream: { send(m: RequestMessage): void }; build: Build; output: { name: string; path: string } }, nar: { narHash: string; narSize: number }) {
    held.stream.send({
      case: 'buildFinished',
      value: { buildId: held.build.id, result: BuildResult.SUCCESS, outputs: [{ name: held.output.name, path: held.output.path, narHash: nar.narHash, narSize: BigInt(nar.narSize), references: [] }] },
    });
    await waitForState(held.build.id, BuildState.SUCCEEDED);
  }

  async function eventCount(buildId: string): Promise<number> {
    const [row] = await t.coordinator.database.db.select({ n: count() }).from(events).where(eq(events.buildId, buildId));
    return Number(row!.n);
  }

  async function narinfo(storePath: string): Promise<{ status: number; text: string }> {
    const res = await fetch(`${t.coordinator.url}/${parseStorePath(storePath).hashPart}.narinfo`);
    return { status: res.status, text: await res.text() };
  }

  const narDir = () => join(t.dataDir, 'nars', 'nar');
  const stagingDir = () => join(t.dataDir, 'nars', 'staging');
  const storedNars = () => readdirSync(narDir()).sort();

  async function* requests(header: HeaderInit, frames: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, trailer: () => Promise<{ narHash: string; narSize: bigint }>) {
    yield { message: { case: 'header', value: header } } satisfies UploadRequest;
    for await (const frame of frames) yield { message: { case: 'chunk', value: frame } } satisfies UploadRequest;
    yield { message: { case: 'trailer', value: await trailer() } } satisfies UploadRequest;
  }

  async function framesOf(chunks: Buffer[]): Promise<Buffer[]> {
    return Promise.all(chunks.map((c) => compressFrame(c)));
  }

  /** Uploads a whole NAR and what it declares about itself. */
  function upload(client: AgentClient, header: HeaderInit, frames: Buffer[], declared: { narHash: string; narSize: number }) {
    return client.uploadOutput(requests(header, frames, async () => ({ narHash: declared.narHash, narSize: BigInt(declared.narSize) })));
  }

  async function uploadTree(client: AgentClient, header: HeaderInit, dir: string) {
    const nar = Buffer.concat(await narChunks(dir));
    await upload(client, header, await framesOf(await narChunks(dir)), { narHash: narHashOf(nar), narSize: nar.length });
    return nar;
  }

  /** Waits, watching the staging directory, until QueryUpload reports `offset` held. */
  async function untilStaged(client: AgentClient, header: HeaderInit, offset: number): Promise<void> {
    const watcher = watch(stagingDir());
    let last = -1n;
    try {
      await within(
        new Promise<void>((resolve, reject) => {
          let checking = false;
          let again = false;
          const check = async (): Promise<void> => {
            if (checking) {
              again = true;
              return;
            }
            checking = true;
            try {
              do {
                again = false;
                last = (await client.queryUpload({ buildId: header.buildId, outputName: header.outputName })).offset;
                if (last === BigInt(offset)) return resolve();
              } while (again);
            } catch (err) {
              reject(err as Error);
            } finally {
              checking = false;
            }
          };
          watcher.on('change', () => void check());
          void check();
        }),
        `QueryUpload to report ${offset} bytes staged`,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message} (last reported ${last})`, { cause: err });
    } finally {
      watcher.close();
    }
  }

  test('refuses a wrong password or an unknown agent with UNAUTHENTICATED, on Connect and UploadOutput', async () => {
    const agent = await newAgent('auth');
    const header: HeaderInit = { buildId: randomUUID(), outputName: 'out', storePath: '/nix/store/x', offset: 0n, references: [] };
    const nothing = { narHash: narHashOf(Buffer.alloc(0)), narSize: 0 };
    const strangers = [
      agentClient(t.coordinator.url, agent.id, 'not-the-password'),
      agentClient(t.coordinator.url, randomUUID(), agent.password),
      agentClient(t.coordinator.url, 'not-a-uuid', agent.password),
    ];
    for (const client of strangers) {
      const err = await openStream(client).end();
      expect(err?.code).toBe(Code.Unauthenticated);
      expect((await refusal(upload(client, header, [], nothing))).code).toBe(Code.Unauthenticated);
      expect((await refusal(client.queryUpload({ buildId: header.buildId, outputName: 'out' }))).code).toBe(Code.Unauthenticated);
    }
    // The right credentials are let in.
    const welcome = await openStream(agent.client).take('welcome');
    expect(welcome.agentId).toBe(agent.id);
  });

  test('refuses reports and uploads for a build another agent holds with PERMISSION_DENIED, leaving it unchanged and the stream up', async () => {
    const owner = await agentWithBuild('owner');
    const id = owner.build.id;
    const before = await getBuild(id);
    expect(before.state).toBe(BuildState.ALLOCATED);
    expect(before.agentId).toBe(owner.agent.id);
    const eventsBefore = await eventCount(id);

    const intruder = await newAgent('intruder');
    const reports: RequestMessage[] = [
      { case: 'buildStarted', value: { buildId: id } },
      { case: 'buildFinished', value: { buildId: id, result: BuildResult.FAILURE, message: 'not mine' } },
      { case: 'setupFailure', value: { buildId: id, message: 'not mine' } },
    ];
    // Each report is answered with its refusal, one after the other on the same stream.
    const stream = openStream(intruder.client);
    await stream.take('welcome');
    for (const [report, kind] of [[reports[0]!, ReportKind.BUILD_STARTED], [reports[1]!, ReportKind.BUILD_FINISHED], [reports[2]!, ReportKind.SETUP_FAILURE]] as const) {
      stream.send(report);
      const ack = await stream.take('acknowledged', (a) => a.buildId === id);
      expect(ack.refusal?.code).toBe(Code.PermissionDenied);
      expect(ack.refusal?.report).toBe(kind);
      expect(ack.refusal?.message).toContain(`build ${id} is not allocated to agent ${intruder.id}`);
    }
    expect(stream.open).toBe(true);
    const dir = outputTree();
    const refused = await refusal(uploadTree(intruder.client, owner.header, dir));
    expect(refused.code).toBe(Code.PermissionDenied);
    expect((await refusal(intruder.client.queryUpload({ buildId: id, outputName: 'out' }))).code).toBe(Code.PermissionDenied);

    expect(await getBuild(id)).toEqual(before);
    expect(await eventCount(id)).toBe(eventsBefore);
    expect((await narinfo(owner.output.path)).status).toBe(404);
    // The agent that holds it may report on it.
    owner.stream.send({ case: 'buildStarted', value: { buildId: id } });
    await waitForState(id, BuildState.STARTED);
  });

  test('resumes an upload cut half way from the offset QueryUpload reports, storing the NAR byte for byte', async () => {
    const held = await agentWithBuild('resume');
    const { agent, output, header } = held;
    const dir = outputTree();
    const chunks = await narChunks(dir);
    expect(chunks.length).toBeGreaterThanOrEqual(6);
    const frames = await framesOf(chunks);
    const sent = 3;
    const whole = chunks.slice(0, sent).reduce((n, c) => n + c.length, 0);

    // The first attempt sends the header and three frames, then the connection is cut.
    const cut = new AbortController();
    async function* firstAttempt(): AsyncGenerator<UploadRequest> {
      yield { message: { case: 'header', value: header } };
      for (const frame of frames.slice(0, sent)) yield { message: { case: 'chunk', value: frame } };
      await new Promise((resolve) => cut.signal.addEventListener('abort', resolve, { once: true }));
    }
    const first = agent.client.uploadOutput(firstAttempt(), { signal: cut.signal });
    await untilStaged(agent.client, header, whole);
    cut.abort();
    expect((await refusal(first)).code).toBe(Code.Canceled);
    const query = await agent.client.queryUpload({ buildId: header.buildId, outputName: header.outputName });
    expect({ offset: query.offset, complete: query.complete }).toEqual({ offset: BigInt(whole), complete: false });
    expect((await narinfo(output.path)).status).toBe(404);

    // The second sends only the rest, from a fresh serialisation, as the agent does.
    const nar = dumpPath(dir, { chunkSize: CHUNK });
    let resent = 0;
    async function* rest(): AsyncGenerator<Buffer> {
      for await (const chunk of skipBytes(nar, Number(query.offset))) {
        resent += chunk.length;
        yield chunk;
      }
    }
    const stored = await agent.client.uploadOutput(
      requests({ ...header, offset: query.offset }, lz4Frames(rest()), async () => {
        const r = await nar.result;
        return { narHash: `sha256:${encodeBase32(r.sha256)}`, narSize: BigInt(r.size) };
      }),
    );
    const original = await run('nix-store', ['--dump', dir]);
    expect(resent).toBe(original.length - whole);
    expect((await agent.client.queryUpload({ buildId: header.buildId, outputName: header.outputName })).complete).toBe(true);
    // Stored, and served once the attempt's success is taken.
    expect((await narinfo(output.path)).status).toBe(404);
    await succeedWith(held, { narHash: narHashOf(original), narSize: original.length });

    const info = await narinfo(output.path);
    expect(info.status).toBe(200);
    const parsed: NarInfo = parseNarInfo(info.text);
    expect(parsed.storePath).toBe(output.path);
    expect(parsed.narHash).toBe(narHashOf(original));
    expect(parsed.narSize).toBe(original.length);
    const file = parsed.files[0]!;
    expect(file.compression).toBe('lz4');
    const res = await fetch(`${t.coordinator.url}/${file.url}`);
    expect(res.status).toBe(200);
    const compressed = Buffer.from(await res.arrayBuffer());
    expect(file.fileHash).toBe(narHashOf(compressed));
    expect(file.fileSize).toBe(compressed.length);
    expect({ fileHash: stored.fileHash, fileSize: stored.fileSize }).toEqual({ fileHash: file.fileHash, fileSize: BigInt(compressed.length) });
    // lz4(1) reads the concatenated frames as one .lz4 file.
    const plain = await run('lz4', ['-dc'], compressed);
    expect(plain.equals(original)).toBe(true);

    expect(readdirSync(stagingDir()).filter((f) => f.startsWith(header.buildId!))).toEqual([]);
  });

  test('a second UploadOutput of an output while the first is in progress is ABORTED, and the first stores its NAR byte for byte', async () => {
    const held = await agentWithBuild('concurrent');
    const { agent, build, output, header } = held;
    const dir = outputTree();
    const chunks = await narChunks(dir);
    const frames = await framesOf(chunks);
    const nar = Buffer.concat(chunks);
    const declared = { narHash: narHashOf(nar), narSize: nar.length };
    const sent = 3;
    const whole = chunks.slice(0, sent).reduce((n, c) => n + c.length, 0);

    // The first call sends three frames and waits; the others race it meanwhile.
    const proceed = new AbortController();
    async function* slow(): AsyncGenerator<UploadRequest> {
      yield { message: { case: 'header', value: header } };
      for (const frame of frames.slice(0, sent)) yield { message: { case: 'chunk', value: frame } };
      await new Promise((resolve) => proceed.signal.addEventListener('abort', resolve, { once: true }));
      for (const frame of frames.slice(sent)) yield { message: { case: 'chunk', value: frame } };
      yield { message: { case: 'trailer', value: { narHash: declared.narHash, narSize: BigInt(declared.narSize) } } };
    }
    const first = agent.client.uploadOutput(slow());
    try {
      await untilStaged(agent.client, header, whole);
      // Retries racing it, from 0 and from the offset it reports, at once.
      const racers = await Promise.all([
        refusal(upload(agent.client, header, frames, declared)),
        refusal(upload(agent.client, { ...header, offset: BigInt(whole) }, frames.slice(sent), declared)),
      ]);
      for (const err of racers) {
        expect(err.code).toBe(Code.Aborted);
        expect(err.rawMessage).toContain(`an upload of output out of build ${build.id} is in progress already`);
      }
      expect((await agent.client.queryUpload({ buildId: header.buildId, outputName: header.outputName })).offset).toBe(BigInt(whole));
    } finally {
      proceed.abort();
    }
    await within(first, 'the first upload to finish');
    await succeedWith(held, declared);

    const info = await narinfo(output.path);
    expect(info.status).toBe(200);
    const file = parseNarInfo(info.text).files[0]!;
    const compressed = Buffer.from(await (await fetch(`${t.coordinator.url}/${file.url}`)).arrayBuffer());
    expect((await run('lz4', ['-dc'], compressed)).equals(nar)).toBe(true);
    expect(readdirSync(stagingDir()).filter((f) => f.startsWith(header.buildId!))).toEqual([]);
  });

  test('refuses a NAR whose declared hash does not match with INVALID_ARGUMENT, storing nothing and restarting from 0', async () => {
    const held = await agentWithBuild('mismatch');
    const { agent, output, header } = held;
    const dir = outputTree();
    const chunks = await narChunks(dir);
    const nar = Buffer.concat(chunks);
    const storedBefore = storedNars();
    const declared = { narHash: narHashOf(Buffer.from('some other NAR')), narSize: nar.length };
    const err = await refusal(upload(agent.client, header, await framesOf(chunks), declared));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain(`is not the one declared (${nar.length} bytes, ${declared.narHash}); nothing was stored`);

    expect((await narinfo(output.path)).status).toBe(404);
    expect(storedNars()).toEqual(storedBefore);
    expect(readdirSync(stagingDir()).filter((f) => f.startsWith(header.buildId!))).toEqual([]);
    const query = await agent.client.queryUpload({ buildId: header.buildId, outputName: header.outputName });
    expect({ offset: query.offset, complete: query.complete }).toEqual({ offset: 0n, complete: false });
    // The same NAR declared truthfully is then taken, from 0.
    await upload(agent.client, header, await framesOf(chunks), { narHash: narHashOf(nar), narSize: nar.length });
    await succeedWith(held, { narHash: narHashOf(nar), narSize: nar.length });
    expect((await narinfo(output.path)).status).toBe(200);
  });

  test('takes LZ4 frames from any encoder, and refuses a chunk that is not a valid frame with INVALID_ARGUMENT naming it', async () => {
    const held = await agentWithBuild('frames');
    const { agent, output, header } = held;
    const chunks = await narChunks(outputTree());
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    const nar = Buffer.concat(chunks);
    const declared = { narHash: narHashOf(nar), narSize: nar.length };
    // kiln's own frames, lz4_flex's with every checksum, lz4(1)'s: in turn.
    const encoders = [
      (c: Buffer) => compressLz4Frame(c),
      (c: Buffer) => compressFrame(c, { contentChecksum: true, blockChecksums: true }),
      (c: Buffer) => run('lz4', ['-c'], c),
    ];
    const frames = await Promise.all(chunks.map((c, i) => encoders[i % encoders.length]!(c)));
    const storedBefore = storedNars();
    const broken = frames.map((f, i) => (i === 1 ? Buffer.concat([f.subarray(0, 6), Buffer.from([f[6]! ^ 0xff]), f.subarray(7)]) : f));
    const err = await refusal(upload(agent.client, header, broken, declared));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain('chunk 1 is not a valid LZ4 frame: its header checksum does not match');
    expect(storedNars()).toEqual(storedBefore);
    expect(readdirSync(stagingDir()).filter((f) => f.startsWith(header.buildId!))).toEqual([]);

    await upload(agent.client, header, frames, declared);
    await succeedWith(held, declared);
    const file = parseNarInfo((await narinfo(output.path)).text).files[0]!;
    const compressed = Buffer.from(await (await fetch(`${t.coordinator.url}/${file.url}`)).arrayBuffer());
    expect((await run('lz4', ['-dc'], compressed)).equals(nar)).toBe(true);
  });

  test("refuses a NAR with an entry named '..' with INVALID_ARGUMENT naming it, storing nothing", async () => {
    const { agent, output, header } = await agentWithBuild('dotdot');
    // prettier-ignore
    const evil = Buffer.concat([
      'nix-archive-1', '(', 'type', 'directory',
      'entry', '(', 'name', '..', 'node', '(', 'type', 'regular', 'contents', 'escaped', ')', ')',
      ')',
    ].map(narString));
    const storedBefore = storedNars();
    // Its hash and size are declared truthfully: only its content is wrong.
    const err = await refusal(upload(agent.client, header, [await compressFrame(evil)], { narHash: narHashOf(evil), narSize: evil.length }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain('the uploaded NAR is not valid');
    expect(err.rawMessage).toContain('the entry name ".."');

    expect((await narinfo(output.path)).status).toBe(404);
    expect(storedNars()).toEqual(storedBefore);
    const query = await agent.client.queryUpload({ buildId: header.buildId, outputName: header.outputName });
    expect({ offset: query.offset, complete: query.complete }).toEqual({ offset: 0n, complete: false });
  });

  test("refuses an invalid NAR as soon as the bad entry arrives, without waiting for the rest of the upload", async () => {
    const { agent, output, header } = await agentWithBuild('dotdot-early');
    // prettier-ignore
    const start = Buffer.concat([
      'nix-archive-1', '(', 'type', 'directory',
      'entry', '(', 'name', '..', 'node', '(', 'type', 'regular', 'contents',
    ].map(narString));
    // The agent never sends the rest: the call is held open until the coordinator answers.
    const answered = new AbortController();
    async function* early(): AsyncGenerator<UploadRequest> {
      yield { message: { case: 'header', value: header } };
      yield { message: { case: 'chunk', value: await compressFrame(start) } };
      await new Promise((resolve) => answered.signal.addEventListener('abort', resolve, { once: true }));
    }
    try {
      const err = await refusal(agent.client.uploadOutput(early()));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain('the entry name ".."');
    } finally {
      answered.abort();
    }
    expect((await narinfo(output.path)).status).toBe(404);
    expect(readdirSync(stagingDir()).filter((f) => f.startsWith(header.buildId!))).toEqual([]);
    const query = await agent.client.queryUpload({ buildId: header.buildId, outputName: header.outputName });
    expect({ offset: query.offset, complete: query.complete }).toEqual({ offset: 0n, complete: false });
  });

  test('a second control stream of the same agent replaces the first, which ends with ABORTED', async () => {
    const agent = await newAgent('replace');
    const first = openStream(agent.client);
    await first.take('welcome');
    const second = openStream(agent.client);
    await second.take('welcome');
    const err = await first.end();
    expect(err?.code).toBe(Code.Aborted);
    expect(err?.rawMessage).toContain('replaced by a newer connection');
    // Work goes to the newer stream.
    const build = await submitLeaf('replace');
    await second.take('assignBuild', (a) => a.buildId === build.id);
    expect(second.open).toBe(true);
  });

  test('refuses BuildFinished success before the outputs are uploaded (FAILED_PRECONDITION) on a stream that stays up; after the upload it succeeds and the outputs are served signed', async () => {
    const { agent, build, stream, output, header } = await agentWithBuild('finish');
    stream.send({ case: 'buildStarted', value: { buildId: build.id } });
    await waitForState(build.id, BuildState.STARTED);
    const before = await getBuild(build.id);
    const dir = outputTree();
    const nar = Buffer.concat(await narChunks(dir));
    const finished: RequestMessage = {
      case: 'buildFinished',
      value: {
        buildId: build.id,
        result: BuildResult.SUCCESS,
        outputs: [{ name: output.name, path: output.path, narHash: narHashOf(nar), narSize: BigInt(nar.length), references: [] }],
      },
    };
    stream.send(finished);
    const refused = await stream.take('acknowledged', (a) => a.buildId === build.id);
    expect(refused.refusal?.code).toBe(Code.FailedPrecondition);
    expect(refused.refusal?.report).toBe(ReportKind.BUILD_FINISHED);
    expect(refused.refusal?.message).toContain(`build ${build.id} cannot succeed: output out (${output.path}) was not uploaded`);
    expect(await getBuild(build.id)).toEqual(before);
    expect(stream.open).toBe(true);

    await uploadTree(agent.client, header, dir);
    // Reported again on the same stream, it is recorded.
    stream.send(finished);
    const ack = await stream.take('acknowledged', (a) => a.buildId === build.id);
    expect(ack.refusal).toBeUndefined();
    const after = await getBuild(build.id);
    expect(after.state).toBe(BuildState.SUCCEEDED);
    expect(after.endedAt).toBeDefined();

    const key = parseNixPublicKey(t.coordinator.nixPublicKey);
    for (const o of after.outputs) {
      const info = await narinfo(o.path);
      expect(info.status).toBe(200);
      expect(info.text).toMatch(/^Sig: \S+:\S+$/m);
      const parsed = parseNarInfo(info.text);
      expect(parsed.storePath).toBe(o.path);
      expect(parsed.narHash).toBe(narHashOf(nar));
      expect(parsed.deriver).toBe(basename(build.derivationPath));
      expect(countValidSignatures(parsed, [key])).toBe(1);
    }
  });

  test('refuses BuildFinished success whose outputs are not as uploaded, naming the output, and the build does not succeed', async () => {
    const { agent, build, stream, output, header } = await agentWithBuild('misreported');
    stream.send({ case: 'buildStarted', value: { buildId: build.id } });
    await waitForState(build.id, BuildState.STARTED);
    const nar = await uploadTree(agent.client, header, outputTree());
    const before = await getBuild(build.id);
    const eventsBefore = await eventCount(build.id);
    const truth = { name: output.name, path: output.path, narHash: narHashOf(nar), narSize: BigInt(nar.length), references: [] };
    const otherHash = narHashOf(Buffer.from('another NAR'));

    const cases = [
      [{ ...truth, narHash: otherHash }, `output out (${output.path}) differs: the report says ${otherHash}, ${nar.length} bytes; the cache holds ${narHashOf(nar)}, ${nar.length} bytes`],
      [{ ...truth, narSize: BigInt(nar.length + 8) }, `output out (${output.path}) differs: the report says ${narHashOf(nar)}, ${nar.length + 8} bytes`],
      [{ ...truth, name: 'dev' }, `the derivation has no output "dev", which the report names; output out (${output.path}) is not in the report`],
    ] as const;
    for (const [reported, message] of cases) {
      stream.send({ case: 'buildFinished', value: { buildId: build.id, result: BuildResult.SUCCESS, outputs: [reported] } });
      const ack = await stream.take('acknowledged', (a) => a.buildId === build.id);
      expect(ack.refusal?.code).toBe(Code.FailedPrecondition);
      expect(ack.refusal?.message).toContain(`build ${build.id} cannot succeed: ${message}`);
      expect(await getBuild(build.id)).toEqual(before);
    }
    expect(await eventCount(build.id)).toBe(eventsBefore);

    // The truth is taken.
    stream.send({ case: 'buildFinished', value: { buildId: build.id, result: BuildResult.SUCCESS, outputs: [truth] } });
    expect((await stream.take('acknowledged', (a) => a.buildId === build.id)).refusal).toBeUndefined();
    expect((await getBuild(build.id)).state).toBe(BuildState.SUCCEEDED);
  });

  test.each([
    ['failure', BuildResult.FAILURE, BuildState.FAILED],
    ['success', BuildResult.SUCCESS, BuildState.SUCCEEDED],
  ] as const)('the same BuildFinished (%s) sent twice is acknowledged twice and changes nothing the second time', async (name, result, state) => {
    const { agent, build, stream, output, header } = await agentWithBuild(`twice-${name}`);
    const dir = outputTree();
    const outputs = [];
    if (result === BuildResult.SUCCESS) {
      const nar = await uploadTree(agent.client, header, dir);
      outputs.push({ name: output.name, path: output.path, narHash: narHashOf(nar), narSize: BigInt(nar.length), references: [] });
    }
    const finished: RequestMessage = { case: 'buildFinished', value: { buildId: build.id, result, outputs, message: 'done' } };
    stream.send(finished);
    await stream.take('acknowledged', (a) => a.buildId === build.id);
    const once = await getBuild(build.id);
    expect(once.state).toBe(state);
    const eventsOnce = await eventCount(build.id);

    stream.send(finished);
    await stream.take('acknowledged', (a) => a.buildId === build.id);
    expect(stream.open).toBe(true);
    expect(await getBuild(build.id)).toEqual(once);
    expect(await eventCount(build.id)).toBe(eventsOnce);
  });
  /** A small output tree (a script and a symlink): its NAR fits in a report. */
  function smallTree(): string {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-small-output-'));
    trees.push(dir);
    writeFileSync(join(dir, 'hello'), '#!/bin/sh\necho hello\n');
    chmodSync(join(dir, 'hello'), 0o755);
    symlinkSync('hello', join(dir, 'hi'));
    return dir;
  }

  /** A success report carrying the output's NAR inline, declared as `declared` says. */
  async function inlineFinished(buildId: string, output: { name: string; path: string }, nar: Buffer, declared = { narHash: narHashOf(nar), narSize: nar.length }): Promise<RequestMessage> {
    return {
      case: 'buildFinished',
      value: {
        buildId,
        result: BuildResult.SUCCESS,
        outputs: [{ name: output.name, path: output.path, narHash: declared.narHash, narSize: BigInt(declared.narSize), references: [], narLz4: await compressFrame(nar) }],
      },
    };
  }

  test('a success report carrying a small output inline stores it as an upload would: served signed, byte for byte, nothing left staged', async () => {
    const { build, stream, output } = await agentWithBuild('inline');
    const dir = smallTree();
    const nar = Buffer.concat(await narChunks(dir));
    stream.send({ case: 'buildStarted', value: { buildId: build.id } });
    stream.send(await inlineFinished(build.id, output, nar));
    const ack = await stream.take('acknowledged', (a) => a.buildId === build.id);
    expect(ack.refusal).toBeUndefined();
    expect((await getBuild(build.id)).state).toBe(BuildState.SUCCEEDED);

    const info = await narinfo(output.path);
    expect(info.status).toBe(200);
    const parsed = parseNarInfo(info.text);
    expect(parsed.narHash).toBe(narHashOf(nar));
    expect(countValidSignatures(parsed, [parseNixPublicKey(t.coordinator.nixPublicKey)])).toBe(1);
    const compressed = Buffer.from(await (await fetch(`${t.coordinator.url}/${parsed.files[0]!.url}`)).arrayBuffer());
    expect((await run('lz4', ['-dc'], compressed)).equals(await run('nix-store', ['--dump', dir]))).toBe(true);
    expect(readdirSync(stagingDir()).filter((f) => f.startsWith(build.id))).toEqual([]);
  });

  test.each([
    ['a hash that is not the NAR\'s', 'mismatch', 'is not the one declared'],
    ['an entry named ".."', 'dotdot', 'the entry name ".."'],
  ] as const)('refuses a success report whose inline NAR has %s with INVALID_ARGUMENT, storing nothing; the stream stays up and a good report is taken', async (_name, flaw, message) => {
    const { build, stream, output } = await agentWithBuild(`inline-${flaw}`);
    stream.send({ case: 'buildStarted', value: { buildId: build.id } });
    await waitForState(build.id, BuildState.STARTED);
    const before = await getBuild(build.id);
    const storedBefore = storedNars();
    const nar = Buffer.concat(await narChunks(smallTree()));
    // prettier-ignore
    const evil = Buffer.concat(['nix-archive-1', '(', 'type', 'directory', 'entry', '(', 'name', '..', 'node', '(', 'type', 'regular', 'contents', 'x', ')', ')', ')'].map(narString));
    const bad = flaw === 'mismatch'
      ? await inlineFinished(build.id, output, nar, { narHash: narHashOf(Buffer.from('another NAR')), narSize: nar.length })
      : await inlineFinished(build.id, output, evil);
    stream.send(bad);
    const refused = await stream.take('acknowledged', (a) => a.buildId === build.id);
    expect(refused.refusal?.code).toBe(Code.InvalidArgument);
    expect(refused.refusal?.report).toBe(ReportKind.BUILD_FINISHED);
    expect(refused.refusal?.message).toContain(message);
    expect(await getBuild(build.id)).toEqual(before);
    expect(storedNars()).toEqual(storedBefore);
    expect((await narinfo(output.path)).status).toBe(404);
    expect(stream.open).toBe(true);

    stream.send(await inlineFinished(build.id, output, nar));
    expect((await stream.take('acknowledged', (a) => a.buildId === build.id)).refusal).toBeUndefined();
    expect((await getBuild(build.id)).state).toBe(BuildState.SUCCEEDED);
  });

  test('refuses an inline output larger than the limit with INVALID_ARGUMENT saying to upload it; uploaded, the same report without it is taken', async () => {
    const { agent, build, stream, output, header } = await agentWithBuild('inline-large');
    const dir = outputTree(); // 600 KiB of data: no inline output
    const nar = Buffer.concat(await narChunks(dir));
    stream.send(await inlineFinished(build.id, output, nar));
    const refused = await stream.take('acknowledged', (a) => a.buildId === build.id);
    expect(refused.refusal?.code).toBe(Code.InvalidArgument);
    expect(refused.refusal?.message).toContain(`output out of build ${build.id} carries ${nar.length} bytes of NAR in its report; at most 65536 may come inline, upload it with UploadOutput`);
    expect((await narinfo(output.path)).status).toBe(404);

    await uploadTree(agent.client, header, dir);
    stream.send({ case: 'buildFinished', value: { buildId: build.id, result: BuildResult.SUCCESS, outputs: [{ name: output.name, path: output.path, narHash: narHashOf(nar), narSize: BigInt(nar.length), references: [] }] } });
    expect((await stream.take('acknowledged', (a) => a.buildId === build.id)).refusal).toBeUndefined();
    expect((await getBuild(build.id)).state).toBe(BuildState.SUCCEEDED);
  });

  test('the same success report with an inline output sent twice (a resend after a reconnect) is acknowledged twice and changes nothing the second time', async () => {
    const { build, stream, output } = await agentWithBuild('inline-twice');
    const finished = await inlineFinished(build.id, output, Buffer.concat(await narChunks(smallTree())));
    stream.send(finished);
    expect((await stream.take('acknowledged', (a) => a.buildId === build.id)).refusal).toBeUndefined();
    const once = await getBuild(build.id);
    expect(once.state).toBe(BuildState.SUCCEEDED);
    const eventsOnce = await eventCount(build.id);
    stream.send(finished);
    expect((await stream.take('acknowledged', (a) => a.buildId === build.id)).refusal).toBeUndefined();
    expect(await getBuild(build.id)).toEqual(once);
    expect(await eventCount(build.id)).toBe(eventsOnce);
  });
});
