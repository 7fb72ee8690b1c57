// AdminService's calls on the binary cache itself: garbage collection by the retention
// rules of the coordinator's configuration.
import type { ServiceImpl } from '@connectrpc/connect';
import type { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import type { Database } from '../db/connection.js';
import type { Logger } from '../logger.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { collectGarbage } from '../substitutes/garbage-collection.js';
import type { RetentionRules } from '../substitutes/retention.js';

export interface CacheAdminDeps {
  db: Database;
  storage: NarStorage;
  retention: RetentionRules;
  log: Logger;
  /** Runs between the removal of the rows and of the files (the in-memory index catching up). */
  beforeUnlink?: () => Promise<void>;
}

export function cacheAdmin(deps: CacheAdminDeps): Pick<ServiceImpl<typeof AdminService>, 'collectGarbage'> {
  return {
    async collectGarbage(req) {
      const report = await collectGarbage({ ...deps, rules: deps.retention, dryRun: req.dryRun, log: deps.log.child({ part: 'gc', dryRun: req.dryRun }) });
      return { paths: report.paths, files: BigInt(report.files), orphanFiles: BigInt(report.orphanFiles), bytes: BigInt(report.bytes) };
    },
  };
}
