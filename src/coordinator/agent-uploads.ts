// AgentService's upload calls: QueryUpload, UploadOutput, UploadLog. Each checks that
// the calling agent holds the build it uploads for.
import { and, eq } from 'drizzle-orm';
import type { ServiceImpl } from '@connectrpc/connect';
import { Code, ConnectError } from '@connectrpc/connect';
import type { AgentService, UploadOutputRequest } from '../../gen/kiln/v1/agent_pb.js';
import type { Database } from '../db/connection.js';
import { KilnError } from '../errors.js';
import { buildAttempts } from '../db/schema.js';
import type { Logger } from '../logger.js';
import { heldBuild, outputOfHeldBuild } from '../scheduler/build-outputs.js';
import { LogTooLargeError, type LogStorage } from '../storage/log-storage.js';
import type { NarStorage } from '../storage/nar-storage.js';
import type { PathSigner } from '../substitutes/narinfo-signer.js';
import { authenticatedAgent } from './auth.js';
import type { Dispatcher } from './dispatcher.js';
import { receiveOutput, stagingKey } from './upload-receiver.js';
import { logTooLargeMessage, TOO_LARGE_CODE, type SizeLimits } from '../protocol/size-limits.js';
import { ATTR } from '../telemetry/build-trace.js';
import { UNTRACED, type UploadTelemetry } from '../telemetry/build-telemetry.js';

export interface AgentUploadDeps {
  db: Database;
  storage: NarStorage;
  /** Signs each committed path's narinfo (upload-receiver.ts). */
  sign?: PathSigner;
  logs: LogStorage;
  dispatcher: Dispatcher;
  log: Logger;
  /** Traces and counts uploads. */
  telemetry?: UploadTelemetry;
  /** The largest output NAR and log taken (--max-output-size, --max-log-size). */
  sizeLimits: SizeLimits;
}

type Uploads = Pick<ServiceImpl<typeof AgentService>, 'queryUpload' | 'uploadOutput' | 'uploadLog'>;

export function agentUploads(deps: AgentUploadDeps): Uploads {
  return {
    async queryUpload(req, ctx) {
      const agentId = ctx.values.get(authenticatedAgent)!;
      const output = await outputOfHeldBuild(deps.db, agentId, req.buildId, req.outputName);
      if (output.stored) return { offset: 0n, complete: true };
      return { offset: BigInt(await deps.storage.stagedOffset(stagingKey(req.buildId, output.attempt, req.outputName))), complete: false };
    },

    async uploadOutput(requests, ctx) {
      const agentId = ctx.values.get(authenticatedAgent)!;
      const telemetry = deps.telemetry ?? UNTRACED;
      const received = await telemetry.upload('output', ctx.requestHeader, { [ATTR.agentId]: agentId }, async (span) => {
        const header = (h: { buildId: string; outputName: string; storePath: string }) =>
          span?.setAttributes({ [ATTR.buildId]: h.buildId, [ATTR.output]: h.outputName, 'kiln.output.path': h.storePath });
        const receiver = { db: deps.db, storage: deps.storage, sign: deps.sign, maxOutputBytes: deps.sizeLimits.maxOutputBytes };
        const r = await receiveOutput(receiver, agentId, span ? watchHeader(requests, header) : requests);
        deps.log.debug({ agentId, storePath: r.storePath, fileHash: r.fileHash, fileSize: r.fileSize }, 'output stored');
        return { result: r, bytes: r.fileSize };
      });
      // Builds that waited for this output are ready: here and on every replica.
      if (received.released.length > 0) deps.dispatcher.workAvailable();
      return { fileHash: received.fileHash, fileSize: BigInt(received.fileSize) };
    },

    async uploadLog(requests, ctx) {
      const agentId = ctx.values.get(authenticatedAgent)!;
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done || first.value.message.case !== 'buildId') {
        throw new ConnectError('the first message of a log upload must be its build id', Code.InvalidArgument);
      }
      const build = await heldBuild(deps.db, agentId, first.value.message.value);
      const telemetry = deps.telemetry ?? UNTRACED;
      const attributes = { [ATTR.buildId]: build.id, [ATTR.attempt]: build.attempt, [ATTR.agentId]: agentId };
      return telemetry.upload('log', ctx.requestHeader, attributes, async () => {
        async function* frames() {
          for (;;) {
            const next = await iterator.next();
            if (next.done) return;
            if (next.value.message.case !== 'chunk') throw new ConnectError('a log upload carries chunks after its build id', Code.InvalidArgument);
            yield next.value.message.value;
          }
        }
        let size: number;
        try {
          size = await deps.logs.write(build.id, build.attempt, frames(), deps.sizeLimits.maxLogBytes);
        } catch (err) {
          // Hydra's "log limit exceeded": the agent fails the build for it.
          if (err instanceof LogTooLargeError) throw new ConnectError(logTooLargeMessage(build.id, err.maxBytes), TOO_LARGE_CODE);
          if (err instanceof ConnectError || err instanceof KilnError) throw err; // refusals as they are (out of space)
          throw new ConnectError(`the log could not be stored: ${(err as Error).message}`, Code.InvalidArgument);
        }
        await deps.db
          .update(buildAttempts)
          .set({ logSize: size })
          .where(and(eq(buildAttempts.buildId, build.id), eq(buildAttempts.attempt, build.attempt)));
        return { result: { size: BigInt(size) }, bytes: size };
      });
    },
  };
}

/** Passes an upload's messages through, telling `onHeader` what its header says. */
async function* watchHeader<M extends UploadOutputRequest>(
  requests: AsyncIterable<M>,
  onHeader: (header: { buildId: string; outputName: string; storePath: string }) => void,
): AsyncGenerator<M> {
  for await (const request of requests) {
    if (request.message.case === 'header') onHeader(request.message.value);
    yield request;
  }
}
