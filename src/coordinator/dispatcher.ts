// Hands builds to connected agents. Anything that may have made work available (a
// submission, a finished build, an upload, an agent with free slots) pokes the
// dispatcher; pokes while a pass runs coalesce into one more pass. A slow timer is the
// safety net, and also returns builds whose agent's lease ran out.
import { create } from '@bufbuild/protobuf';
import { inArray } from 'drizzle-orm';
import { AssignBuildSchema, ConnectResponseSchema } from '../../gen/kiln/v1/agent_pb.js';
import type { Database } from '../db/connection.js';
import { derivationOutputs, derivations } from '../db/schema.js';
import type { Logger } from '../logger.js';
import { claimBuilds, type ClaimedBuild } from '../scheduler/allocation.js';
import { expireLeases, returnUndelivered } from '../scheduler/build-reports.js';
import type { AgentSession, AgentSessions } from './agent-sessions.js';
import type { BuildEvents } from './build-events.js';

export interface DispatcherOptions {
  db: Database;
  sessions: AgentSessions;
  log: Logger;
  /** How often to look for work without being poked, and to expire leases. */
  intervalMs?: number;
  events: BuildEvents;
}

export class Dispatcher {
  private running: Promise<void> | undefined;
  private again = false;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly opts: DispatcherOptions) {
    this.timer = setInterval(() => {
      void expireLeases(opts.db)
        .then((expired) => {
          if (expired.length > 0) opts.log.info({ builds: expired }, 'leases expired; builds back in the queue');
          for (const buildId of expired) opts.events.emit({ buildId, kind: 'requeued' });
          this.poke();
        })
        .catch((err: unknown) => opts.log.error({ err }, 'lease expiry failed'));
    }, opts.intervalMs ?? 5_000);
    this.timer.unref();
  }

  /** Something may have made work available: run a pass soon. */
  poke(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves when no pass is running (for orderly shutdown and for tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.idle();
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.pass();
      } catch (err) {
        this.opts.log.error({ err }, 'dispatch pass failed');
      }
    } while (this.again && !this.stopped);
  }

  private async pass(): Promise<void> {
    for (const session of this.opts.sessions.all()) {
      const credit = session.credit();
      if (credit === 0) continue;
      const claimed = await claimBuilds(this.opts.db, { agentId: session.agentId, systems: session.systems, tags: session.tags }, credit);
      if (claimed.length > 0) await this.assign(session, claimed);
    }
  }

  private async assign(session: AgentSession, claimed: ClaimedBuild[]): Promise<void> {
    const paths = [...new Set(claimed.map((c) => c.derivationPath))];
    const [texts, outputs] = await Promise.all([
      this.opts.db.select({ path: derivations.path, text: derivations.text }).from(derivations).where(inArray(derivations.path, paths)),
      this.opts.db.select().from(derivationOutputs).where(inArray(derivationOutputs.derivationPath, paths)),
    ]);
    for (const build of claimed) {
      const text = texts.find((t) => t.path === build.derivationPath)!.text;
      const message = create(ConnectResponseSchema, {
        message: {
          case: 'assignBuild',
          value: create(AssignBuildSchema, {
            buildId: build.id,
            derivationPath: build.derivationPath,
            derivation: Buffer.from(text, 'utf8'),
            outputs: outputs
              .filter((o) => o.derivationPath === build.derivationPath)
              .map(({ name, path, hashAlgo, hash }) => ({ name, path, hashAlgo, hash })),
            priority: build.priority,
            attempt: build.attempt,
          }),
        },
      });
      if (!session.outbox.push(message)) {
        // The stream ended between the claim and now: the agent never saw the build.
        await returnUndelivered(this.opts.db, session.agentId, build.id);
        this.opts.events.emit({ buildId: build.id, kind: 'requeued' });
        this.opts.log.warn({ buildId: build.id, agentId: session.agentId }, 'agent stream ended before the build reached it; back in the queue');
        continue;
      }
      session.assigned(build.id);
      this.opts.events.emit({ buildId: build.id, kind: 'allocated' });
      this.opts.log.info({ buildId: build.id, agentId: session.agentId, attempt: build.attempt }, 'build assigned');
    }
  }
}
