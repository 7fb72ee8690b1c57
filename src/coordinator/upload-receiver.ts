// Receiving a NAR (AgentService.UploadOutput, AdminService.UploadSource): frames are
// decompressed as they arrive to hash the NAR, check its structure and count its size,
// while the compressed frames are staged on disk as they are. Only when the trailer's
// hash and size match what arrived is the file moved into place and the store path
// recorded; a broken upload stays staged so that it resumes where it stopped. An output
// over the coordinator's max-output-size is refused at its header when it says its size,
// and as soon as the bytes that arrive pass the limit when it does not (or lies); what it
// staged is removed.
import { releasePaths } from '../scheduler/availability.js';
import { createHash, type Hash as NodeHash } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { UploadSourceRequest } from '../../gen/kiln/v1/admin_pb.js';
import { UploadOutputRequestSchema, type UploadOutputRequest } from '../../gen/kiln/v1/agent_pb.js';
import { AsyncQueue } from '../async-queue.js';
import type { Database } from '../db/connection.js';
import { encodeBase32 } from '../store/base32.js';
import { Hash } from '../store/hash.js';
import { decompressLz4FrameParts } from '../store/lz4-frames.js';
import { NarError, type NarResult } from '../store/nar-format.js';
import { parseNar } from '../store/nar-parser.js';
import { parseStorePath } from '../store/store-path.js';
import { StagingInUseError, type NarStorage, type StagedFrame, type StagedUpload } from '../storage/nar-storage.js';
import { outputOfHeldBuild } from '../scheduler/build-outputs.js';
import { recordPath } from './path-records.js';
import type { PathSigner } from '../substitutes/narinfo-signer.js';
import { INLINE_NAR_MAX } from '../upload-limits.js';
import { outputTooLargeMessage, overLimit, TOO_LARGE_CODE } from '../protocol/size-limits.js';

/** What receiving a NAR needs; `sign` signs the path's narinfo as it is committed. */
export interface NarReceiverDeps {
  db: Database;
  storage: NarStorage;
  /** Without it the path is served once the background signer has signed it. */
  sign?: PathSigner;
}

export interface ReceivedOutput {
  storePath: string;
  /** Builds that were waiting only for this path. */
  released: string[];
  fileHash: string;
  fileSize: number;
}

/** What a received NAR becomes: where it is staged, and the store path it is recorded as. */
export interface NarTarget {
  key: string;
  /** The upload in words, for errors ("output out of build …"). */
  what: string;
  /** Uncompressed offset the sender starts at: 0, or a resume. */
  offset: bigint;
  storePath: string;
  references: readonly string[];
  deriver: string;
  /** The build the path is an output of; null for sources. */
  buildId: string | null;
  /**
   * For a build's output: the attempt and output name it is pending under. It is served
   * only once that attempt's success is accepted (scheduler/pending-outputs.ts); a source
   * is served as soon as it is stored.
   */
  pending?: { attempt: number; name: string };
  /** The most NAR bytes (uncompressed) it may have; 0 or absent: no limit (sources). */
  maxNarBytes?: number;
}

/** What receiving a build's output needs: the database, the NAR storage, the size limit. */
export interface OutputReceiverDeps extends NarReceiverDeps {
  /** The coordinator's max-output-size in bytes (0: none). */
  maxOutputBytes: number;
}

/** The messages of an upload call: a header, LZ4 frames, a trailer. */
type UploadMessage = UploadOutputRequest | UploadSourceRequest;

/** The upload's first message, which must be its header. */
export async function uploadHeader<M extends UploadMessage>(
  iterator: AsyncIterator<M>,
): Promise<Extract<M['message'], { case: 'header' }>['value']> {
  const first = await iterator.next();
  if (first.done || first.value.message.case !== 'header') {
    throw new ConnectError('the first message of an upload must be its header', Code.InvalidArgument);
  }
  return first.value.message.value as Extract<M['message'], { case: 'header' }>['value'];
}

function checkReferences(references: readonly string[]): void {
  for (const ref of references) {
    try {
      parseStorePath(ref);
    } catch (err) {
      throw new ConnectError(`reference ${JSON.stringify(ref)}: ${(err as Error).message}`, Code.InvalidArgument);
    }
  }
}

/** The staging key of one output of one attempt of a build (a later attempt's upload never resumes an earlier one's bytes). */
export function stagingKey(buildId: string, attempt: number, outputName: string): string {
  return `${buildId}.${attempt}.${outputName}`;
}

/** Frames taken ahead of the one handed on (a frame another LZ4 encoder made may decode on the thread pool). */
const FRAMES_IN_FLIGHT = 4;
/** Decompressed pieces (blocks) the NAR parser may have waiting; past this the pipeline waits for it. */
const PLAIN_QUEUED = 2;
/**
 * Received frames not yet on disk: while one write runs, the frames that come are gathered
 * and written with the next (one writev and one journal write for many frames instead of
 * two thread-pool calls for each). Past this the pipeline waits for the disk.
 */
const UNWRITTEN_MAX_BYTES = 4 << 20;

interface FrameInFlight {
  frame: Uint8Array;
  /** Its bytes, in pieces; known on arrival for kiln's frames. */
  plain: Buffer[] | Promise<Buffer[]>;
  /** False for a frame replayed from the staged file, which holds it already. */
  store: boolean;
}

/**
 * A NAR being received, worked on as a pipeline that keeps the frames' order: each frame is
 * decompressed as it arrives (on the event loop: for kiln's frames lz4-napi's block decoder
 * costs less than a hop to the thread pool; other frames go there), then, oldest first,
 * hashed, handed to the parser and appended to the staged file, so that the network, the
 * CPU and the disk do not wait for each other. The parser checks the NAR's structure and
 * hashes what it reads (it refuses trailing bytes, so its hash and size are the whole
 * NAR's); the stored file's hash is kept here. Memory is bounded: FRAMES_IN_FLIGHT frames,
 * PLAIN_QUEUED chunks waiting for the parser and UNWRITTEN_MAX_BYTES of frames for the disk.
 */
class IncomingNar {
  readonly fileHash: NodeHash = createHash('sha256');
  fileSize = 0;
  private readonly plain = new AsyncQueue<Uint8Array>();
  private readonly parsing: Promise<NarResult>;
  /** Why the NAR cannot be taken (the parser found it invalid, a frame is bad, a write failed). */
  private failure: { err: unknown } | undefined;
  /** Rejects the one pending `orFailure` wait, if any. */
  private rejectWaiting: ((err: unknown) => void) | undefined;
  private readonly inFlight: FrameInFlight[] = [];
  private frames = 0;
  /** The pump hands frames on while there are some; it is restarted by `add` when idle. */
  private pumping = false;
  private pumped: Promise<void> = Promise.resolve();
  /** Wakes `add` when the pipeline has room again. */
  private wakeAdd: (() => void) | undefined;
  /** Frames waiting for the write under way to end; written together by the next one. */
  private unwritten: StagedFrame[] = [];
  private unwrittenBytes = 0;
  /** The writes to the staged file while there are frames for it; restarted by `queueWrite` when idle. */
  private writing: Promise<void> = Promise.resolve();
  private writerRunning = false;
  /** NAR bytes handed on so far (replayed ones included), counted against the limit. */
  private plainSize = 0;

  constructor(
    private readonly staged: StagedUpload,
    private readonly target: Pick<NarTarget, 'storePath' | 'maxNarBytes'>,
  ) {
    // The parser runs beside the receiver, reading decompressed bytes from a queue.
    this.parsing = (async () => {
      const events = parseNar(this.plain);
      for await (const _event of events) {
        // Events are not needed; parsing them is the check.
      }
      return events.result;
    })().catch((err: unknown) => {
      throw err instanceof NarError ? new ConnectError(`the uploaded NAR is not valid: ${err.message}`, Code.InvalidArgument) : err;
    });
    // Also observed in finish().
    this.parsing.catch((err: unknown) => this.fail(err));
  }

  /**
   * `next`, unless the upload fails first: then its error, so that a bad upload is refused
   * when the bad bytes arrive, not after the sender has sent the rest. (Not Promise.race
   * against one long-lived promise: every race would leave a reaction on it holding its
   * result, a whole frame, until the upload ends.)
   */
  orFailure<T>(next: Promise<T>): Promise<T> {
    if (this.failure) {
      next.catch(() => undefined);
      return Promise.reject(this.failure.err);
    }
    return new Promise<T>((resolve, reject) => {
      this.rejectWaiting = reject;
      next.then(resolve, reject).finally(() => {
        if (this.rejectWaiting === reject) this.rejectWaiting = undefined;
      });
    });
  }

  /** Takes the next frame; returns at once unless FRAMES_IN_FLIGHT frames are being worked on. */
  async add(frame: Uint8Array, store: boolean): Promise<void> {
    if (this.failure) throw this.failure.err;
    const index = this.frames++;
    const invalid = (err: unknown) => new ConnectError(`chunk ${index} is not a valid LZ4 frame: ${(err as Error).message}`, Code.InvalidArgument);
    let plain: Buffer[] | Promise<Buffer[]>;
    try {
      plain = decompressLz4FrameParts(frame);
    } catch (err) {
      throw invalid(err);
    }
    if (plain instanceof Promise) {
      plain = plain.catch((err: unknown) => {
        throw invalid(err);
      });
      plain.catch(() => undefined); // the pump awaits it in turn; an early failure must not count as unhandled
    }
    this.inFlight.push({ frame, plain, store });
    if (!this.pumping) {
      this.pumping = true;
      this.pumped = this.pump();
    }
    if (this.inFlight.length > FRAMES_IN_FLIGHT) await this.orFailure(new Promise<void>((resolve) => (this.wakeAdd = resolve)));
  }

  /** Waits for every frame, its write and the structure check; gives the NAR's hash and size. */
  async finish(): Promise<NarResult> {
    await this.pumped;
    if (this.failure) throw this.failure.err;
    await this.writing;
    this.plain.end();
    return this.parsing;
  }

  /**
   * Stops, once no write is in flight (so that the staged file may be closed). With
   * `keepReceived` the frames that arrived are still written first, so that a broken
   * upload resumes after them; otherwise they are dropped.
   */
  async abandon(keepReceived: boolean): Promise<void> {
    if (!keepReceived) {
      this.inFlight.length = 0;
      this.unwritten = [];
      this.fail(new Error('upload abandoned'));
    }
    await this.pumped;
    this.plain.end(new Error('upload abandoned'));
    await this.writing.catch(() => undefined);
  }

  private fail(err: unknown): void {
    if (this.failure) return;
    this.failure = { err };
    this.rejectWaiting?.(err);
  }

  private queueWrite(frame: StagedFrame): void {
    this.unwritten.push(frame);
    this.unwrittenBytes += frame.bytes.length;
    if (this.writerRunning) return;
    this.writerRunning = true;
    this.writing = this.writeOut();
    this.writing.catch((err: unknown) => this.fail(err)); // finish also awaits it
  }

  /** Writes the waiting frames, a batch at a time, until none is left. */
  private async writeOut(): Promise<void> {
    try {
      while (this.unwritten.length > 0) {
        const batch = this.unwritten;
        this.unwritten = [];
        this.unwrittenBytes = 0;
        await this.staged.appendFrames(batch);
      }
    } finally {
      this.writerRunning = false;
    }
  }

  /** Hands on the oldest frame once it is decompressed: into the file hash, to the parser, to the disk. */
  private async pump(): Promise<void> {
    try {
      while (this.inFlight.length > 0 && !this.failure) {
        const { frame, plain: decompressing, store } = this.inFlight[0]!;
        const parts = await decompressing;
        this.inFlight.shift();
        this.fileHash.update(frame);
        this.fileSize += frame.length;
        let plainLength = 0;
        for (const part of parts) plainLength += part.length;
        this.plainSize += plainLength;
        const limit = this.target.maxNarBytes ?? 0;
        if (overLimit(this.plainSize, limit)) {
          // Whatever the header said: the bytes themselves passed the limit.
          this.fail(new ConnectError(outputTooLargeMessage(this.target.storePath, this.plainSize, limit, true), TOO_LARGE_CODE));
          break;
        }
        for (const part of parts) this.plain.push(part);
        if (store) {
          this.queueWrite({ bytes: frame, plain: plainLength });
          if (this.unwrittenBytes > UNWRITTEN_MAX_BYTES) await this.writing;
        }
        await this.plain.drained(PLAIN_QUEUED);
        if (this.inFlight.length <= FRAMES_IN_FLIGHT) {
          this.wakeAdd?.();
          this.wakeAdd = undefined;
        }
      }
    } catch (err) {
      this.fail(err);
    } finally {
      // In the same turn as the loop's last check, so `add` never finds a pump that will not look again.
      this.pumping = false;
    }
  }
}

export async function receiveOutput(
  deps: OutputReceiverDeps,
  agentId: string,
  requests: AsyncIterable<UploadOutputRequest>,
): Promise<ReceivedOutput> {
  const iterator = requests[Symbol.asyncIterator]();
  const header = await uploadHeader(iterator);
  return receiveNar(deps, (await outputTarget(deps, agentId, header)).target, iterator);
}

/** LZ4's worst case for that many bytes, with the frame's header and checksums. */
const INLINE_FRAME_MAX = INLINE_NAR_MAX + (INLINE_NAR_MAX >> 8) + 64;

/**
 * Stores a small output sent inside its BuildFinished (one LZ4 frame) exactly as an
 * UploadOutput call with that frame would: the same checks, the same staging and record.
 * Undefined when the path is in the cache already (as QueryUpload would have told an
 * uploading agent): the report is then judged against what is stored.
 */
export async function receiveInlineOutput(
  deps: OutputReceiverDeps,
  agentId: string,
  buildId: string,
  output: { name: string; path: string; narHash: string; narSize: bigint; references: readonly string[]; narLz4: Uint8Array },
): Promise<ReceivedOutput | undefined> {
  if (output.narSize > BigInt(INLINE_NAR_MAX) || output.narLz4.length > INLINE_FRAME_MAX) {
    throw new ConnectError(
      `output ${output.name} of build ${buildId} carries ${output.narSize} bytes of NAR in its report; at most ${INLINE_NAR_MAX} may come inline, upload it with UploadOutput`,
      Code.InvalidArgument,
    );
  }
  const header = { buildId, outputName: output.name, storePath: output.path, offset: 0n, references: output.references, narSize: output.narSize };
  async function* messages(): AsyncGenerator<UploadMessage> {
    yield create(UploadOutputRequestSchema, { message: { case: 'chunk', value: output.narLz4 } });
    yield create(UploadOutputRequestSchema, { message: { case: 'trailer', value: { narHash: output.narHash, narSize: output.narSize } } });
  }
  const { target, stored } = await outputTarget(deps, agentId, header);
  if (stored) return undefined;
  return receiveNar(deps, target, messages());
}

/**
 * Where an output of a build the agent holds is staged and recorded; refuses a header that
 * does not match it, or that declares a NAR over the limit (removing what an earlier try of
 * the same upload staged: it will not be resumed).
 */
async function outputTarget(
  deps: OutputReceiverDeps,
  agentId: string,
  header: { buildId: string; outputName: string; storePath: string; offset: bigint; references: readonly string[]; narSize?: bigint },
): Promise<{ target: NarTarget; stored: boolean }> {
  const output = await outputOfHeldBuild(deps.db, agentId, header.buildId, header.outputName);
  if (output.path !== header.storePath) {
    throw new ConnectError(`output ${header.outputName} of build ${header.buildId} is ${output.path}, not ${header.storePath}`, Code.InvalidArgument);
  }
  checkReferences(header.references);
  const key = stagingKey(header.buildId, output.attempt, header.outputName);
  if (!output.stored && overLimit(header.narSize ?? 0n, deps.maxOutputBytes)) {
    await deps.storage.discardStaged(key);
    throw new ConnectError(outputTooLargeMessage(header.storePath, header.narSize!, deps.maxOutputBytes), TOO_LARGE_CODE);
  }
  const target = {
    key,
    what: `output ${header.outputName} of build ${header.buildId}`,
    offset: header.offset,
    storePath: header.storePath,
    references: header.references,
    deriver: output.derivationPath,
    buildId: header.buildId,
    pending: { attempt: output.attempt, name: output.name },
    maxNarBytes: deps.maxOutputBytes,
  };
  return { target, stored: output.stored };
}

/** Receives the frames and trailer of an upload whose header was read and checked. */
export async function receiveNar(
  deps: NarReceiverDeps,
  target: NarTarget,
  iterator: AsyncIterator<UploadMessage>,
): Promise<ReceivedOutput> {
  const staged = await stageOrRefuse(deps.storage, target.key, target.offset, target.what);
  const incoming = new IncomingNar(staged, target);
  let completed = false;
  try {
    if (BigInt(staged.plainOffset) !== target.offset) {
      throw new ConnectError(
        `the coordinator holds ${staged.plainOffset} bytes of this upload, not ${target.offset}: resume from QueryUpload's offset`,
        Code.FailedPrecondition,
      );
    }
    await replayStaged(staged, incoming);
    const trailer = await receiveFrames(iterator, incoming);
    // Every frame is written once this resolves; the staged upload stays open until it
    // is committed (or, on a refusal, discarded) below: ending it is a one-time act.
    const nar = await incoming.finish();
    const declared = parseDeclaredHash(trailer.narHash);
    const received = new Hash('sha256', nar.sha256);
    if (BigInt(nar.size) !== trailer.narSize || !received.equals(declared)) {
      throw new ConnectError(
        `the NAR that arrived (${nar.size} bytes, ${received}) is not the one declared (${trailer.narSize} bytes, ${declared}); nothing was stored`,
        Code.InvalidArgument,
      );
    }
    const fileHash = encodeBase32(incoming.fileHash.digest());
    const fileName = `${fileHash}.nar.lz4`;
    completed = true; // from here the staged upload is committed or, on an error, already ended
    const fields = { path: target.storePath, narHash: received.toString(), narSize: nar.size, references: [...target.references].sort(), deriver: target.deriver };
    await recordPath(deps.db, {
      commitFile: () => staged.commit(fileName),
      pending: target.pending && target.buildId ? { buildId: target.buildId, ...target.pending } : undefined,
      row: {
        ...fields,
        ...deps.sign?.(fields),
        hashPart: parseStorePath(target.storePath).hashPart,
        fileName,
        compression: 'lz4',
        fileHash: `sha256:${fileHash}`,
        fileSize: incoming.fileSize,
        buildId: target.buildId,
      },
    });
    // After the record's commit, so no build's wait can slip past it (see availability.ts).
    // A pending output arrives with its attempt's success, not now.
    const released = target.pending ? [] : await releasePaths(deps.db, [target.storePath]);
    return { storePath: target.storePath, fileHash: `sha256:${fileHash}`, fileSize: incoming.fileSize, released };
  } catch (err) {
    // A refused NAR (invalid, or over the limit) is thrown away whole; a broken stream
    // keeps what came for a resume.
    const refused = !completed && err instanceof ConnectError && (err.code === Code.InvalidArgument || err.code === TOO_LARGE_CODE);
    await incoming.abandon(!refused && !completed);
    await (refused ? staged.discard() : staged.close()).catch(() => undefined);
    throw err;
  }
}

/** Opens the staging of one upload; a second call for the same one while the first runs is ABORTED. */
async function stageOrRefuse(storage: NarStorage, key: string, offset: bigint, what: string): Promise<StagedUpload> {
  try {
    return await storage.stage(key, { fresh: offset === 0n });
  } catch (err) {
    if (!(err instanceof StagingInUseError)) throw err;
    throw new ConnectError(
      `an upload of ${what} is in progress already; retry when it has ended, from the offset QueryUpload reports`,
      Code.Aborted,
    );
  }
}

/** Feeds what a previous attempt staged back through the hashes and the NAR check. */
async function replayStaged(staged: StagedUpload, incoming: IncomingNar): Promise<void> {
  for await (const frame of staged.readFrames()) await incoming.add(frame, false);
}

async function receiveFrames(iterator: AsyncIterator<UploadMessage>, incoming: IncomingNar): Promise<{ narHash: string; narSize: bigint }> {
  for (;;) {
    const next = await incoming.orFailure(iterator.next());
    if (next.done) {
      throw new ConnectError('the upload ended before its trailer; resume from the offset QueryUpload reports', Code.Aborted);
    }
    const m = next.value.message;
    if (m.case === 'chunk') {
      await incoming.add(m.value, true);
    } else if (m.case === 'trailer') {
      return m.value;
    } else {
      throw new ConnectError(`unexpected ${m.case ?? 'empty'} message in the middle of an upload`, Code.InvalidArgument);
    }
  }
}

function parseDeclaredHash(text: string): Hash {
  try {
    const h = Hash.parse(text);
    if (h.algorithm !== 'sha256') throw new Error('NAR hashes are sha256');
    return h;
  } catch (err) {
    throw new ConnectError(`trailer nar_hash ${JSON.stringify(text)}: ${(err as Error).message}`, Code.InvalidArgument);
  }
}
