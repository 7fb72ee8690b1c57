// AdminService's calls on the binary cache itself: garbage collection by the retention
// rules of the coordinator's configuration, and the listing mirrors are exported from.
import type { ServiceImpl } from '@connectrpc/connect';
import type { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import { listCachePaths } from '../cache/cache-listing.js';
import type { Database } from '../db/connection.js';
import { invalidArgument } from '../errors.js';
import type { Logger } from '../logger.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { collectGarbage } from '../substitutes/garbage-collection.js';
import type { RetentionRules } from '../substitutes/retention.js';

export interface CacheAdminDeps {
  db: Database;
  storage: NarStorage;
  retention: RetentionRules;
  log: Logger;
  /** CacheKeys.fingerprint of the keys the cache signs with: only paths they signed are served, so listed. */
  keyFingerprint: string;
  /** Runs between the removal of the rows and of the files (the in-memory index catching up). */
  beforeUnlink?: () => Promise<void>;
}

const DEFAULT_PAGE_SIZE = 1000;
const MAX_PAGE_SIZE = 10_000;
// The page token is the last hash part the page before covered.
const HASH_PART = /^[0123456789abcdfghijklmnpqrsvwxyz]{32}$/;

export function cacheAdmin(deps: CacheAdminDeps): Pick<ServiceImpl<typeof AdminService>, 'collectGarbage' | 'listCachePaths'> {
  return {
    async collectGarbage(req) {
      const report = await collectGarbage({ ...deps, rules: deps.retention, dryRun: req.dryRun, log: deps.log.child({ part: 'gc', dryRun: req.dryRun }) });
      return { paths: report.paths, files: BigInt(report.files), orphanFiles: BigInt(report.orphanFiles), bytes: BigInt(report.bytes) };
    },
    async listCachePaths(req) {
      if (req.pageSize < 0 || req.pageSize > MAX_PAGE_SIZE) throw invalidArgument(`page_size must be from 0 (the default, ${DEFAULT_PAGE_SIZE}) to ${MAX_PAGE_SIZE}, not ${req.pageSize}`);
      if (req.pageToken && !HASH_PART.test(req.pageToken)) throw invalidArgument('page_token is not one this coordinator handed out (a previous next_page_token)');
      const size = req.pageSize || DEFAULT_PAGE_SIZE;
      const page = await listCachePaths(deps.db, deps.keyFingerprint, size, req.pageToken || undefined);
      return {
        paths: page.paths.map((p) => ({ hashPart: p.hashPart, storePath: p.path, version: p.version })),
        nextPageToken: page.next ?? '',
      };
    },
  };
}
