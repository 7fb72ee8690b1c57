// Uploads a build's outputs and log to the coordinator. An output is serialised to NAR
// as it is sent, each 1 MiB chunk compressed into its own LZ4 frame (a concatenation
// of frames is itself a valid .lz4 file). A broken upload resumes from the offset the
// coordinator reports; the bytes it holds are not sent again. Transient failures (the
// coordinator restarting, a replica down) are retried for the agent's retry budget.
// The header declares the NAR's size (from a walk of the tree, before any byte is sent):
// an output over the coordinator's max-output-size is not sent at all.
import { createReadStream } from 'node:fs';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { Client } from '@connectrpc/connect';
import { AgentService, type OutputInfoSchema, type UploadOutputRequestSchema } from '../../gen/kiln/v1/agent_pb.js';
import type { Logger } from '../logger.js';
import { encodeBase32 } from '../store/base32.js';
import { compressLz4Frame, LZ4_BLOCK_BYTES } from '../store/lz4-frames.js';
import type { NarResult } from '../store/nar-format.js';
import { dumpPath, type DumpStream } from '../store/nar-writer.js';
import { narSizeOf } from '../store/nar-size.js';
import { outputTooLargeMessage, overLimit } from '../protocol/size-limits.js';
import { OverSizeLimit } from './too-large.js';
import { INLINE_NAR_MAX } from '../upload-limits.js';
import { DEFAULT_RETRY_FOR_MS, retryTransient } from './backoff.js';
import type { BuiltOutput } from './builders/builder.js';

type UploadRequest = MessageInitShape<typeof UploadOutputRequestSchema>;
type OutputInfo = MessageInitShape<typeof OutputInfoSchema>;

/** Frames compressed ahead of the one being sent (their blocks on libuv's thread pool). */
const COMPRESS_WINDOW = 2;
/**
 * NAR bytes per LZ4 frame: four of its 256 KiB blocks. Each frame is a message, a promise
 * and a few buffers on both sides, so fewer, larger ones cost less CPU; the blocks stay at
 * 256 KiB, which is what the coordinator's decoder holds at once per block (lz4-napi's
 * frame decoder, which kiln used to, reserved 4 MiB buffers for frames above 256 KiB).
 */
export const UPLOAD_CHUNK_BYTES = 4 * LZ4_BLOCK_BYTES;

/**
 * Compresses each chunk into its own LZ4 frame, a few at a time, keeping their order.
 * `compressed` is told of each chunk once its frame is made (the compressor is done with it).
 */
export async function* lz4Frames<C extends Uint8Array>(chunks: AsyncIterable<C>, compressed?: (chunk: C) => void): AsyncGenerator<Buffer> {
  const pending: Promise<Buffer>[] = [];
  try {
    for await (const chunk of chunks) {
      const p = compressLz4Frame(chunk);
      p.then(() => compressed?.(chunk), () => undefined); // a failure is thrown where it is awaited below
      pending.push(p);
      if (pending.length >= COMPRESS_WINDOW) yield await pending.shift()!;
    }
    while (pending.length > 0) yield await pending.shift()!;
  } finally {
    pending.length = 0;
  }
}

/**
 * The messages of one NAR upload call (UploadOutput, UploadSource): the header, the NAR
 * from byte `offset` on as LZ4 frames, then a trailer with the whole NAR's hash and size.
 */
export async function* narUploadMessages<H>(
  header: H,
  nar: DumpStream,
  offset = 0,
): AsyncGenerator<{ case: 'header'; value: H } | { case: 'chunk'; value: Uint8Array } | { case: 'trailer'; value: { narHash: string; narSize: bigint } }> {
  yield { case: 'header', value: header };
  // Each chunk is refilled once compressed: no fresh memory (and its page faults) per chunk.
  for await (const frame of lz4Frames(skipBytes(nar, offset), (chunk) => nar.recycle(chunk))) yield { case: 'chunk', value: frame };
  yield { case: 'trailer', value: narTrailer(await nar.result) };
}

export function narTrailer(result: NarResult): { narHash: string; narSize: bigint } {
  return { narHash: `sha256:${encodeBase32(result.sha256)}`, narSize: BigInt(result.size) };
}

/** The part of a stream of chunks from byte `offset` on. */
export async function* skipBytes(chunks: AsyncIterable<Buffer>, offset: number): AsyncGenerator<Buffer> {
  let position = 0;
  for await (const chunk of chunks) {
    const end = position + chunk.length;
    if (end > offset) yield position >= offset ? chunk : chunk.subarray(offset - position);
    position = end;
  }
}

/**
 * The output ready to go inside its BuildFinished (OutputInfo.nar_lz4) if its NAR is at
 * most INLINE_NAR_MAX bytes; undefined for a larger one, which is uploaded by
 * `uploadOutput`. Reading one byte more than the limit is what tells them apart.
 */
export async function inlineOutput(output: BuiltOutput, signal: AbortSignal): Promise<OutputInfo | undefined> {
  const nar = dumpPath(output.diskPath, { signal, chunkSize: INLINE_NAR_MAX + 1 });
  const chunks = nar[Symbol.asyncIterator]();
  const first = await chunks.next();
  if (first.done || first.value.length > INLINE_NAR_MAX) {
    await chunks.return?.(); // stops the walk
    return undefined;
  }
  const narLz4 = await compressLz4Frame(first.value);
  if (!(await chunks.next()).done) throw new Error(`the NAR of ${output.storePath} went on after a short chunk`);
  return { name: output.name, path: output.storePath, ...narTrailer(await nar.result), references: output.references, narLz4 };
}

export interface UploadContext {
  client: Client<typeof AgentService>;
  signal: AbortSignal;
  log: Logger;
  /** How long transient failures are retried (default DEFAULT_RETRY_FOR_MS). */
  retryForMs?: number;
  /** The coordinator's max-output-size as its Welcome said (0: none known). */
  maxOutputBytes?: number;
}

/**
 * Uploads one output, asking the coordinator before each try how much of it it holds
 * already (a try cut off halfway resumes there). Throws RetryBudgetSpent when the
 * coordinator stayed out of reach for the whole budget, a refusal at once, and
 * OverSizeLimit without sending anything for a NAR over the coordinator's limit.
 */
export async function uploadOutput(ctx: UploadContext, buildId: string, output: BuiltOutput): Promise<OutputInfo> {
  const { client, signal, log } = ctx;
  const narSize = await narSizeOf(output.diskPath, signal);
  if (overLimit(narSize, ctx.maxOutputBytes ?? 0)) throw new OverSizeLimit('output', outputTooLargeMessage(output.storePath, narSize, ctx.maxOutputBytes!));
  const retry = { what: `upload of output ${output.name}`, signal, log: log.child({ output: output.name }), budgetMs: ctx.retryForMs ?? DEFAULT_RETRY_FOR_MS };
  return retryTransient(retry, async (tryNumber) => {
    const { offset } = await client.queryUpload({ buildId, outputName: output.name }, { signal });
    log.debug({ output: output.name, offset: Number(offset), try: tryNumber }, 'uploading output');
    const nar = dumpPath(output.diskPath, { signal, chunkSize: UPLOAD_CHUNK_BYTES });
    const header = { buildId, outputName: output.name, storePath: output.storePath, offset, references: output.references, narSize: BigInt(narSize) };
    async function* requests(): AsyncGenerator<UploadRequest> {
      for await (const message of narUploadMessages(header, nar, Number(offset))) yield { message };
    }
    await client.uploadOutput(requests(), { signal });
    if (tryNumber > 1) log.info({ output: output.name, resumedAt: Number(offset), try: tryNumber }, 'upload resumed and completed');
    return { name: output.name, path: output.storePath, ...narTrailer(await nar.result), references: output.references };
  });
}

/** Streams a build log file to the coordinator, LZ4 frames like outputs; sent whole again on a transient failure. */
export async function uploadLog(ctx: UploadContext, buildId: string, logFile: string): Promise<void> {
  const { client, signal, log } = ctx;
  async function* requests() {
    yield { message: { case: 'buildId' as const, value: buildId } };
    for await (const frame of lz4Frames(createReadStream(logFile, { highWaterMark: UPLOAD_CHUNK_BYTES }) as AsyncIterable<Buffer>)) {
      yield { message: { case: 'chunk' as const, value: frame } };
    }
  }
  await retryTransient({ what: 'log upload', signal, log, budgetMs: ctx.retryForMs ?? DEFAULT_RETRY_FOR_MS }, () => client.uploadLog(requests(), { signal }));
}
