// AdminService's calls for input sources: which paths the cache lacks, and uploading
// one (received like an agent's output, recorded with no build and no deriver).
import type { ServiceImpl } from '@connectrpc/connect';
import type { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import type { Database } from '../db/connection.js';
import { checkReferencesHeld, checkSourceNeeded, missingPaths } from '../scheduler/sources.js';
import { parseStorePath } from '../store/store-path.js';
import type { NarStorage } from '../storage/nar-storage.js';
import type { PathSigner } from '../substitutes/narinfo-signer.js';
import { receiveNar, uploadHeader } from './upload-receiver.js';
import { UNTRACED, type UploadTelemetry } from '../telemetry/build-telemetry.js';

export interface SourceUploadDeps {
  db: Database;
  storage: NarStorage;
  /** Signs each committed path's narinfo (upload-receiver.ts). */
  sign?: PathSigner;
  /** A source arrived: builds waiting on it may be ready. */
  sourceStored(): void;
  /** Traces and counts uploads. */
  telemetry?: UploadTelemetry;
}

type SourceCalls = Pick<ServiceImpl<typeof AdminService>, 'queryMissingPaths' | 'uploadSource'>;

export function sourceUploads(deps: SourceUploadDeps): SourceCalls {
  return {
    async queryMissingPaths(req) {
      return { missing: await missingPaths(deps.db, [...req.paths]) };
    },

    async uploadSource(requests, ctx) {
      const iterator = requests[Symbol.asyncIterator]();
      const header = await uploadHeader(iterator);
      await checkSourceNeeded(deps.db, header.derivationPath, header.storePath, header.via);
      await checkReferencesHeld(deps.db, header.storePath, header.references);
      const telemetry = deps.telemetry ?? UNTRACED;
      const received = await telemetry.upload('source', ctx.requestHeader, { 'kiln.source.path': header.storePath }, async () => {
        const r = await receiveNar(
          deps,
          {
            // Sources are small and sent whole: no resume, so always staged afresh.
            key: `source-${parseStorePath(header.storePath).hashPart}`,
            what: `source ${header.storePath}`,
            offset: 0n,
            storePath: header.storePath,
            references: header.references,
            deriver: '',
            buildId: null,
          },
          iterator,
        );
        return { result: r, bytes: r.fileSize };
      });
      deps.sourceStored();
      return { fileHash: received.fileHash, fileSize: BigInt(received.fileSize) };
    },
  };
}
