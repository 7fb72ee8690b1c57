// AdminService's build logs: one attempt's log, streamed from log storage as stored
// (decompressed frame by frame), so that a large log is never held whole.
import type { ServiceImpl } from '@connectrpc/connect';
import type { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import type { Database } from '../db/connection.js';
import { invalidArgument, notFound } from '../errors.js';
import { getBuild } from '../scheduler/build-queries.js';
import type { LogStorage } from '../storage/log-storage.js';

export function buildLogs(deps: { db: Database; logs: LogStorage }): Pick<ServiceImpl<typeof AdminService>, 'getBuildLog'> {
  return {
    async *getBuildLog(req) {
      if (req.attempt < 0) throw invalidArgument(`attempt ${req.attempt} is not an attempt number (1, 2, ...; 0 for the latest with a log)`);
      const build = await getBuild(deps.db, req.id);
      const withLog = build.attempts.filter((a) => a.logSize !== null);
      const attempt = req.attempt === 0 ? withLog.at(-1) : build.attempts.find((a) => a.attempt === req.attempt);
      if (!attempt) {
        if (req.attempt === 0) {
          throw notFound(`build ${build.id} has no log yet (${build.attempts.length} attempt(s), ${build.state}): an attempt's log arrives when it ends`);
        }
        throw notFound(`build ${build.id} has no attempt ${req.attempt}; it has ${build.attempts.length}`);
      }
      if (attempt.logSize === null) {
        const state = attempt.outcome ? `ended (${attempt.outcome}) without a log` : 'still running: its log arrives when it ends';
        throw notFound(`attempt ${attempt.attempt} of build ${build.id} has no log: it ${state}`);
      }
      for await (const chunk of deps.logs.read(build.id, attempt.attempt)) yield { attempt: attempt.attempt, chunk };
      // An empty log still says which attempt it is.
      if (attempt.logSize === 0) yield { attempt: attempt.attempt, chunk: new Uint8Array() };
    },
  };
}
