// Changes to builds as this coordinator process makes them, after they are committed:
// for whatever watches builds live (tests, the dashboard). The database's event table
// stays the durable record; this is only the in-process signal.
import { EventEmitter } from 'node:events';

export type BuildChangeKind = 'submitted' | 'allocated' | 'started' | 'requeued' | 'finished' | 'canceled';

export type BuildChange =
  | { buildId: string; kind: BuildChangeKind }
  | { kind: 'agent'; agentId: string }
  /** A round of upstream lookups was remembered; `ready` are the builds it made ready. */
  | { kind: 'upstream-answers'; ready: string[] };

export class BuildEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Many watchers (one per test or dashboard stream) are normal.
    this.emitter.setMaxListeners(0);
  }

  emit(change: BuildChange): void {
    this.emitter.emit('change', change);
  }

  on(listener: (change: BuildChange) => void): () => void {
    this.emitter.on('change', listener);
    return () => this.emitter.off('change', listener);
  }
}
