// The configured schedule of fixed-output re-checks (qa.fodCheck): every derivation whose
// last check is older than `every` gets one, no more than `concurrency` running at once,
// at the schedule's (low) priority. Looked at on a timer and whenever a check ends; every
// replica may look, the submission's lock keeps the count.
import type { Logger } from '../logger.js';
import type { Tag } from '../scheduler/tags.js';
import { FOD_CHECK_PRIORITY, submitFodChecks, type FodCheckDeps } from './fod-checks.js';

export interface FodCheckSchedule {
  everyMs: number;
  /** Only derivations with a successful build carrying every one of these tags. */
  tags: Tag[];
  /** Checks running at once, at most (default 1). */
  concurrency: number;
  priority: number;
}

export const DEFAULT_FOD_CHECK_SCHEDULE: Omit<FodCheckSchedule, 'everyMs'> = { tags: [], concurrency: 1, priority: FOD_CHECK_PRIORITY };

export class FodCheckScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private again = false;
  private busy = false;
  private stopped = false;

  constructor(
    private readonly opts: {
      deps: FodCheckDeps;
      schedule: FodCheckSchedule;
      log: Logger;
      /** Builds were submitted: the dispatcher should look. */
      submitted(buildIds: string[]): void;
      /** How often it looks unprompted (default: a minute, or `every` if shorter). */
      pollMs?: number;
    },
  ) {}

  start(): void {
    const every = this.opts.pollMs ?? Math.min(60_000, this.opts.schedule.everyMs);
    this.timer = setInterval(() => this.poke(), every);
    this.timer.unref();
    this.poke();
  }

  /** Looks for due checks now (once more after a look in progress). */
  poke(): void {
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.running = (async () => {
      do {
        this.again = false;
        await this.tick();
      } while (this.again && !this.stopped);
      this.busy = false;
    })();
  }

  private async tick(): Promise<void> {
    const { schedule } = this.opts;
    try {
      const { checks } = await submitFodChecks(
        this.opts.deps,
        { tags: schedule.tags, olderThanMs: schedule.everyMs, limit: schedule.concurrency },
        { priority: schedule.priority, open: schedule.concurrency },
      );
      if (checks.length === 0) return;
      this.opts.log.info({ checks: checks.map((c) => ({ buildId: c.buildId, derivation: c.derivationPath })) }, 'fixed-output re-checks submitted');
      this.opts.submitted(checks.map((c) => c.buildId));
    } catch (err) {
      // The database away: the next look tries again.
      this.opts.log.warn({ err }, 'could not submit fixed-output re-checks');
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }
}
