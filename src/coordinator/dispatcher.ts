// Hands builds to the agents connected to this coordinator. Anything that may have made
// work available (a submission, a finished build, an upload, an agent with free slots,
// another replica's NOTIFY) pokes the dispatcher; pokes while a pass runs coalesce into
// one more pass. A slow timer is the safety net: it also expires leases of agents no
// replica hears from, renews the leases of this replica's agents, and releases waits
// whose paths arrived unnoticed.
import { create } from '@bufbuild/protobuf';
import { AssignBuildSchema, ConnectResponseSchema } from '../../gen/kiln/v1/agent_pb.js';
import type { Database } from '../db/connection.js';
import type { Logger } from '../logger.js';
import { priorityFirst, type AllocationPolicy, type ClaimedBuild } from '../scheduler/allocation.js';
import { sweepWaits } from '../scheduler/availability.js';
import { expireLeases, renewLeases, returnUndelivered, type ReportEffects, type ReportPolicy } from '../scheduler/build-reports.js';
import type { AgentSession, AgentSessions } from './agent-sessions.js';
import type { BuildEvents } from './build-events.js';
import type { FarmSignals } from './farm-signals.js';
import { NO_ASSIGNMENT, type BuildTelemetry } from '../telemetry/build-telemetry.js';

export interface DispatcherOptions {
  db: Database;
  sessions: AgentSessions;
  log: Logger;
  events: BuildEvents;
  signals: FarmSignals;
  reports: ReportPolicy;
  policy?: AllocationPolicy;
  /** How often to look for work without being poked, and to expire leases. */
  intervalMs?: number;
  /** Claims run at once (one per agent); PostgreSQL takes several, PGlite one at a time anyway. */
  concurrency?: number;
  /** The farm's time limits for builds that set none (0: none). */
  defaultLimits?: { timeoutSeconds: number; maxSilentSeconds: number };
  /** Traces and counts assignments. */
  telemetry?: BuildTelemetry;
}

/** How many agents one group claim serves at most. */
const GROUP_SIZE = 200;

function chunks<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
}

/** Sessions by what they can build: the same systems, tags and features. */
function groupAlike(sessions: AgentSession[]): Map<string, AgentSession[]> {
  const groups = new Map<string, AgentSession[]>();
  for (const s of sessions) {
    const key = JSON.stringify([[...s.systems].sort(), s.tags.map((t) => `${t.key}=${t.value}`).sort(), s.features.supported, s.features.mandatory]);
    const group = groups.get(key);
    if (group) group.push(s);
    else groups.set(key, [s]);
  }
  return groups;
}

export class Dispatcher {
  private running: Promise<void> | undefined;
  private again = false;
  private notifying: Promise<void> | undefined;
  private notifyAgain = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  /** Where the next pass starts among the sessions, so no agent always comes first. */
  private rotation = 0;
  readonly policy: AllocationPolicy;

  constructor(private readonly opts: DispatcherOptions) {
    this.policy = opts.policy ?? priorityFirst;
    this.every(opts.intervalMs ?? 5_000, () => this.maintain());
    // Renewed well within the lease, so a connected agent's builds never expire.
    this.every(Math.max(100, Math.floor(opts.reports.leaseMs / 3)), () =>
      renewLeases(opts.db, opts.sessions.all().map((s) => s.agentId), opts.reports.leaseMs),
    );
  }

  private every(ms: number, work: () => Promise<unknown>): void {
    const timer = setInterval(() => {
      void work().catch((err: unknown) => this.opts.log.error({ err }, 'dispatcher upkeep failed'));
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  /** Expired leases back to the queue, forgotten waits released; then a pass. */
  private async maintain(): Promise<void> {
    const expired = await expireLeases(this.opts.db, this.opts.reports);
    if (expired.requeued.length > 0) this.opts.log.info({ builds: expired.requeued }, 'leases expired');
    this.applyEffects(expired);
    const released = await sweepWaits(this.opts.db);
    if (released.length > 0) this.opts.log.warn({ builds: released }, 'released waits on paths that had arrived unnoticed');
    this.poke();
  }

  /** What a report changed: tell the tests' event bus, and look for work now or after a backoff. */
  applyEffects(effects: ReportEffects): void {
    for (const buildId of effects.requeued) this.opts.events.emit({ buildId, kind: 'requeued' });
    for (const buildId of effects.submitted) this.opts.events.emit({ buildId, kind: 'submitted' });
    for (const buildId of effects.ended ?? []) this.opts.events.emit({ buildId, kind: 'finished' });
    for (const ms of effects.retryInMs) this.pokeAfter(ms);
    if (effects.requeued.length + effects.submitted.length + (effects.ready?.length ?? 0) > 0) this.workAvailable();
  }

  /**
   * Work became available: this replica looks now, the others when the NOTIFY reaches
   * them. NOTIFYs coalesce like passes: while one is on its way, any number of changes
   * make one more after it, never one each.
   */
  workAvailable(): void {
    this.poke();
    if (this.notifying) {
      this.notifyAgain = true;
      return;
    }
    this.notifying = (async () => {
      do {
        this.notifyAgain = false;
        await this.opts.signals.workAvailable().catch((err: unknown) => this.opts.log.error({ err }, 'could not notify other replicas'));
      } while (this.notifyAgain && !this.stopped);
    })().finally(() => {
      this.notifying = undefined;
    });
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

  /** A pass after `ms` (a retry's backoff ends then). */
  pokeAfter(ms: number): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.poke();
    }, ms + 10);
    timer.unref();
    this.timers.add(timer);
  }

  /** Resolves when no pass is running (for orderly shutdown and for tests). */
  async idle(): Promise<void> {
    while (this.running || this.notifying) await (this.running ?? this.notifying);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
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
    const sessions = this.opts.sessions.all();
    const start = this.rotation++ % Math.max(1, sessions.length);
    const waiting = [...sessions.slice(start), ...sessions.slice(0, start)].filter((s) => s.credit() > 0);
    // Agents alike in systems and tags claim together when the policy can: one statement
    // for many, where each finished build would otherwise cost its agent one.
    const queue: AgentSession[][] = this.policy.claimForGroup ? [...groupAlike(waiting).values()].flatMap((g) => chunks(g, GROUP_SIZE)) : waiting.map((s) => [s]);
    const workers = Math.max(1, this.opts.concurrency ?? 1);
    await Promise.all(
      Array.from({ length: Math.min(workers, queue.length) }, async () => {
        for (let group = queue.shift(); group && !this.stopped; group = queue.shift()) {
          const claimStartedAt = performance.now();
          const claimed = group.length > 1 ? await this.claimForGroup(group) : undefined;
          for (const session of group) {
            let builds = claimed?.get(session.agentId);
            if (!claimed) {
              const credit = session.credit();
              if (credit === 0) continue;
              const agent = { agentId: session.agentId, systems: session.systems, tags: session.tags, features: session.features };
              builds = await this.policy.claim(this.opts.db, agent, credit, { leaseMs: this.opts.reports.leaseMs });
            }
            if (builds && builds.length > 0) await this.assign(session, builds, claimStartedAt);
          }
        }
      }),
    );
  }

  /** One claim for agents alike; undefined when they must claim alone. */
  private claimForGroup(group: AgentSession[]): Promise<Map<string, ClaimedBuild[]> | undefined> {
    const { systems, tags, features } = group[0]!;
    const agents = group.map((s) => ({ agentId: s.agentId, limit: s.credit() }));
    return this.policy.claimForGroup!(this.opts.db, { systems, tags, features, agents }, { leaseMs: this.opts.reports.leaseMs });
  }

  private async assign(session: AgentSession, claimed: ClaimedBuild[], claimStartedAt: number): Promise<void> {
    for (const build of claimed) {
      const traced = this.opts.telemetry?.assigning(build, session.agentId, claimStartedAt) ?? NO_ASSIGNMENT;
      const message = create(ConnectResponseSchema, {
        message: {
          case: 'assignBuild',
          value: create(AssignBuildSchema, {
            buildId: build.id,
            derivationPath: build.derivationPath,
            derivation: Buffer.from(build.derivation, 'utf8'),
            outputs: build.outputs,
            priority: build.priority,
            attempt: build.attempt,
            timeoutSeconds: build.timeoutSeconds || (this.opts.defaultLimits?.timeoutSeconds ?? 0),
            maxSilentSeconds: build.maxSilentSeconds || (this.opts.defaultLimits?.maxSilentSeconds ?? 0),
            traceparent: traced.traceparent,
          }),
        },
      });
      if (!session.outbox.push(message)) {
        // The stream ended between the claim and now: the agent never saw the build.
        await returnUndelivered(this.opts.db, session.agentId, build.id);
        this.opts.events.emit({ buildId: build.id, kind: 'requeued' });
        traced.within(() => this.opts.log.warn({ buildId: build.id, agentId: session.agentId }, 'agent stream ended before the build reached it; back in the queue'));
        traced.end('the agent stream ended before the build reached it');
        this.workAvailable();
        continue;
      }
      session.assigned(build.id);
      this.opts.events.emit({ buildId: build.id, kind: 'allocated' });
      traced.within(() => this.opts.log.debug({ buildId: build.id, agentId: session.agentId, attempt: build.attempt }, 'build assigned'));
      traced.end();
    }
    this.opts.telemetry?.claimed(claimed.length, claimStartedAt);
  }
}
