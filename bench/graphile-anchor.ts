// The scheduling benchmark's anchor: graphile-worker, a PostgreSQL job queue whose
// claiming kiln's is modelled on, claims and completes empty jobs on the same server
// with its default settings (one job at a time, prepared statements, LISTEN/NOTIFY).
// kiln's assignment rate is reported as a ratio of its job rate, which takes the
// machine and the server out of the comparison.
import { Logger, makeWorkerUtils, run, runMigrations, type LogFunctionFactory } from 'graphile-worker';
import { createDatabase, dropDatabase } from '../test/helpers/postgres-server.js';

export interface GraphileReport {
  jobs: number;
  /** Adding the jobs (one batch call per 10,000), not part of the rate. */
  addSeconds: number;
  /** From the worker's start until its last job completed. */
  seconds: number;
  jobsPerSecond: number;
}

/** graphile-worker logs every job at info; only its warnings and errors are shown. */
const quiet: LogFunctionFactory = (scope) => (level, message) => {
  if (level === 'error' || level === 'warning') console.error(`graphile-worker ${level}: ${message}`, scope);
};

export async function benchGraphile(serverUrl: string, jobs: number): Promise<GraphileReport> {
  const name = 'kiln_bench_graphile';
  await dropDatabase(serverUrl, name);
  const connectionString = await createDatabase(serverUrl, name);
  const logger = new Logger(quiet);
  try {
    await runMigrations({ connectionString, logger });
    const utils = await makeWorkerUtils({ connectionString, logger });
    const added = performance.now();
    try {
      for (let start = 0; start < jobs; start += 10_000) {
        const batch = Array.from({ length: Math.min(10_000, jobs - start) }, (_, i) => ({ identifier: 'noop', payload: { n: start + i } }));
        await utils.addJobs(batch);
      }
    } finally {
      await utils.release();
    }
    const addSeconds = (performance.now() - added) / 1000;

    let done = 0;
    let allDone!: () => void;
    const finished = new Promise<void>((resolve) => (allDone = resolve));
    const started = performance.now();
    let last = started;
    const runner = await run({ connectionString, logger, noHandleSignals: true, taskList: { noop: async () => {} } });
    runner.events.on('job:success', () => {
      last = performance.now();
      if (++done === jobs) allDone();
    });
    runner.events.on('job:error', ({ error }) => console.error('graphile-worker job failed', error));
    await finished;
    await runner.stop();
    const seconds = (last - started) / 1000;
    return { jobs, addSeconds, seconds, jobsPerSecond: jobs / seconds };
  } finally {
    await dropDatabase(serverUrl, name);
  }
}
