// Wake-ups between coordinator replicas that share one database, by LISTEN/NOTIFY: work
// became available (every replica's dispatcher looks), or an agent must be told
// something (the replica that holds its stream tells it). A NOTIFY sent inside a
// transaction is delivered at its commit, never for a change that rolled back. With one
// coordinator the same path is taken, so there is one way, not two.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database, DatabaseHandle } from '../db/connection.js';
import type { Logger } from '../logger.js';

const WORK = 'kiln_work';
const AGENTS = 'kiln_agents';

export type AgentSignal =
  | { agentId: string; kind: 'cancel'; buildId: string; reason: string }
  | { agentId: string; kind: 'drain' }
  | { agentId: string; kind: 'set-active'; active: boolean };

export interface FarmSignalHandlers {
  work(): void;
  agent(signal: AgentSignal): void;
}

type Executor = Database | Parameters<Parameters<Database['transaction']>[0]>[0];

export class FarmSignals {
  private stops: (() => Promise<void>)[] = [];
  private handlers: FarmSignalHandlers | undefined;
  /** Tells this process's own agent signals apart from other replicas'. */
  private readonly origin = randomUUID();

  constructor(
    private readonly database: DatabaseHandle,
    private readonly log: Logger,
  ) {}

  async start(handlers: FarmSignalHandlers): Promise<void> {
    this.handlers = handlers;
    this.stops.push(await this.database.listen(WORK, () => handlers.work()));
    this.stops.push(
      await this.database.listen(AGENTS, (payload) => {
        try {
          const { origin, signal } = JSON.parse(payload) as { origin: string; signal: AgentSignal };
          if (origin !== this.origin) handlers.agent(signal);
        } catch (err) {
          this.log.error({ err, payload }, 'unreadable agent signal');
        }
      }),
    );
  }

  /** Builds became allocatable; with `tx`, said when that transaction commits. */
  async workAvailable(tx: Executor = this.database.db): Promise<void> {
    await tx.execute(sql`select pg_notify(${WORK}, '')`);
  }

  /**
   * Tells an agent something: at once if its stream is on this coordinator, and through
   * NOTIFY to the replica that holds it otherwise.
   */
  async toAgent(signal: AgentSignal): Promise<void> {
    this.handlers?.agent(signal);
    await this.database.db.execute(sql`select pg_notify(${AGENTS}, ${JSON.stringify({ origin: this.origin, signal })})`);
  }

  async stop(): Promise<void> {
    const stops = this.stops;
    this.stops = [];
    await Promise.all(stops.map((s) => s().catch(() => undefined)));
  }
}
