// Uploads a build's outputs and log to the coordinator. An output is serialised to NAR
// as it is sent, each ~1 MiB chunk compressed into its own LZ4 frame (a concatenation
// of frames is itself a valid .lz4 file). A broken upload resumes from the offset the
// coordinator reports; the bytes it holds are not sent again.
import { createReadStream } from 'node:fs';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { Client } from '@connectrpc/connect';
import { compressFrame } from 'lz4-napi';
import { AgentService, type OutputInfoSchema, type UploadOutputRequestSchema } from '../../gen/kiln/v1/agent_pb.js';
import type { Logger } from '../logger.js';
import { encodeBase32 } from '../store/base32.js';
import type { NarResult, NarStream } from '../store/nar-format.js';
import { dumpPath } from '../store/nar-writer.js';
import { Backoff, delay } from './backoff.js';
import type { BuiltOutput } from './builders/builder.js';

type UploadRequest = MessageInitShape<typeof UploadOutputRequestSchema>;
type OutputInfo = MessageInitShape<typeof OutputInfoSchema>;

const MAX_TRIES = 6;
/** Frames compressed ahead of the one being sent, on libuv's thread pool. */
const COMPRESS_WINDOW = 4;

/** Compresses each chunk into its own LZ4 frame, a few at a time, keeping their order. */
export async function* lz4Frames(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  const pending: Promise<Buffer>[] = [];
  try {
    for await (const chunk of chunks) {
      const p = compressFrame(chunk);
      p.catch(() => undefined); // awaited below; keeps an early failure from going unhandled
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
  nar: NarStream<Buffer>,
  offset = 0,
): AsyncGenerator<{ case: 'header'; value: H } | { case: 'chunk'; value: Uint8Array } | { case: 'trailer'; value: { narHash: string; narSize: bigint } }> {
  yield { case: 'header', value: header };
  for await (const frame of lz4Frames(skipBytes(nar, offset))) yield { case: 'chunk', value: frame };
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

export async function uploadOutput(
  client: Client<typeof AgentService>,
  buildId: string,
  output: BuiltOutput,
  signal: AbortSignal,
  log: Logger,
): Promise<OutputInfo> {
  const backoff = new Backoff({ initialMs: 200, maxMs: 10_000 });
  for (let attempt = 1; ; attempt++) {
    try {
      const { offset } = await client.queryUpload({ buildId, outputName: output.name }, { signal });
      const nar = dumpPath(output.diskPath, { signal });
      const header = { buildId, outputName: output.name, storePath: output.storePath, offset, references: output.references };
      async function* requests(): AsyncGenerator<UploadRequest> {
        for await (const message of narUploadMessages(header, nar, Number(offset))) yield { message };
      }
      await client.uploadOutput(requests(), { signal });
      if (offset > 0n) log.info({ output: output.name, resumedAt: Number(offset) }, 'upload resumed and completed');
      return { name: output.name, path: output.storePath, ...narTrailer(await nar.result), references: output.references };
    } catch (err) {
      if (signal.aborted || attempt >= MAX_TRIES) throw err;
      const wait = backoff.next();
      log.warn({ err: (err as Error).message, output: output.name, attempt, retryInMs: wait }, 'output upload failed; resuming');
      await delay(wait, signal);
    }
  }
}

/** Streams a build log file to the coordinator, LZ4 frames like outputs. */
export async function uploadLog(client: Client<typeof AgentService>, buildId: string, logFile: string, signal: AbortSignal): Promise<void> {
  async function* requests() {
    yield { message: { case: 'buildId' as const, value: buildId } };
    for await (const frame of lz4Frames(createReadStream(logFile, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>)) {
      yield { message: { case: 'chunk' as const, value: frame } };
    }
  }
  await client.uploadLog(requests(), { signal });
}
