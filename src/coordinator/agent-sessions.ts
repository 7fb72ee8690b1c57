// The agents connected to this coordinator process, one session per agent: what it can
// build, how much credit (free slots) it has, and the queue of messages to send it.
import { ConnectError, Code } from '@connectrpc/connect';
import type { ConnectResponse, LoadReport } from '../../gen/kiln/v1/agent_pb.js';
import { AsyncQueue } from '../async-queue.js';
import { NO_FEATURES, type AgentFeatures } from '../scheduler/placement.js';
import type { Tag } from '../scheduler/tags.js';

/** An operator's rules for when an agent takes no more builds, whatever its free slots. */
export interface LoadLimits {
  /** 1-minute load average per CPU above which the agent is given nothing (0: no limit). */
  maxLoadPerCpu: number;
  /** Free disk where its store lives below which it is given nothing (0: no limit). */
  minFreeDiskBytes: number;
}

export const NO_LOAD_LIMITS: LoadLimits = { maxLoadPerCpu: 0, minFreeDiskBytes: 0 };

export class AgentSession {
  readonly outbox = new AsyncQueue<ConnectResponse>();
  /** Builds assigned to the agent that it has not finished or given back. */
  readonly holding = new Set<string>();
  /** Free slots in the agent's last load report, less what was assigned since. */
  private reportedFree: number;
  private loadAverage = 0;
  /** Unknown until the first load report that carries it. */
  private freeDiskBytes: number | undefined;
  /** Told to finish what it holds and take nothing more. */
  draining = false;
  /** An operator deactivated the agent: it keeps its stream but gets no builds. */
  active = true;
  lastSeen = Date.now();

  constructor(
    readonly agentId: string,
    readonly systems: string[],
    readonly tags: Tag[],
    readonly maxParallel: number,
    private readonly limits: LoadLimits = NO_LOAD_LIMITS,
    /** CPUs the agent reported (0: unknown, taken as 1). */
    readonly cpuCount = 0,
    /** The system features it offers (validated: mandatory ones among the supported). */
    readonly features: AgentFeatures = NO_FEATURES,
  ) {
    this.reportedFree = maxParallel;
  }

  /** How many more builds the agent can take now: never more than it said it can. */
  credit(): number {
    if (this.draining || !this.active || this.outbox.closed || this.overloaded()) return 0;
    return Math.max(0, Math.min(this.maxParallel - this.holding.size, this.reportedFree));
  }

  /** Whether the last load report crossed an operator's limit. */
  overloaded(): boolean {
    const { maxLoadPerCpu, minFreeDiskBytes } = this.limits;
    if (maxLoadPerCpu > 0 && this.loadAverage / Math.max(1, this.cpuCount) > maxLoadPerCpu) return true;
    return minFreeDiskBytes > 0 && this.freeDiskBytes !== undefined && this.freeDiskBytes < minFreeDiskBytes;
  }

  reportLoad(report: Pick<LoadReport, 'freeSlots' | 'loadAverage' | 'freeDiskBytes'>): void {
    this.reportedFree = report.freeSlots;
    this.loadAverage = report.loadAverage;
    if (report.freeDiskBytes > 0n) this.freeDiskBytes = Number(report.freeDiskBytes);
  }

  /** What the agent last said about itself, for the dashboard and metrics. */
  status(): { loadAverage: number; freeDiskBytes: number | undefined; freeSlots: number; holding: number } {
    return { loadAverage: this.loadAverage, freeDiskBytes: this.freeDiskBytes, freeSlots: this.credit(), holding: this.holding.size };
  }

  assigned(buildId: string): void {
    this.holding.add(buildId);
    this.reportedFree -= 1;
  }

  released(buildId: string): void {
    if (this.holding.delete(buildId)) this.reportedFree = Math.min(this.maxParallel, this.reportedFree + 1);
  }
}

export class AgentSessions {
  private readonly byAgent = new Map<string, AgentSession>();

  /** Adds a session; a previous one for the same agent is ended (the newer stream wins). */
  add(session: AgentSession): void {
    const previous = this.byAgent.get(session.agentId);
    this.byAgent.set(session.agentId, session);
    previous?.outbox.end(new ConnectError('replaced by a newer connection of the same agent', Code.Aborted));
  }

  /** Removes the session if it is still the agent's current one; says whether it was. */
  remove(session: AgentSession): boolean {
    if (this.byAgent.get(session.agentId) !== session) return false;
    this.byAgent.delete(session.agentId);
    return true;
  }

  get(agentId: string): AgentSession | undefined {
    return this.byAgent.get(agentId);
  }

  all(): AgentSession[] {
    return [...this.byAgent.values()];
  }

  closeAll(reason: string): void {
    for (const s of this.byAgent.values()) s.outbox.end(new ConnectError(reason, Code.Unavailable));
    this.byAgent.clear();
  }
}
