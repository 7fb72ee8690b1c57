// A queue that one side pushes into and the other consumes as an async iterable: how a
// bidirectional stream handler yields messages that other code produces. Ending it
// (with or without an error) wakes the consumer.
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiting: ((r: IteratorResult<T>) => void) | undefined;
  private failWaiting: ((err: unknown) => void) | undefined;
  private ended = false;
  private error: unknown;
  /** Producers waiting in `drained`, each for the queue to shrink to its bound. */
  private readonly drainWaiters: { max: number; resolve: () => void }[] = [];

  get closed(): boolean {
    return this.ended;
  }

  /** Queues an item; returns false (dropping it) when the queue has ended. */
  push(item: T): boolean {
    if (this.ended) return false;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = this.failWaiting = undefined;
      resolve({ value: item, done: false });
    } else {
      this.items.push(item);
    }
    return true;
  }

  /**
   * Resolves once at most `max` items wait to be consumed (or the queue has ended): how a
   * producer that must not run ahead of its consumer holds back.
   */
  drained(max: number): Promise<void> {
    if (this.items.length <= max || this.ended) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push({ max, resolve }));
  }

  /** Ends the queue: the consumer gets what is queued, then the end (or the error). */
  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.wakeDrainWaiters();
    if (this.waiting) {
      const resolve = this.waiting;
      const reject = this.failWaiting!;
      this.waiting = this.failWaiting = undefined;
      if (error !== undefined) reject(error);
      else resolve({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item !== undefined) {
          if (this.drainWaiters.length > 0) this.wakeDrainWaiters();
          return Promise.resolve({ value: item, done: false });
        }
        if (this.ended) {
          return this.error !== undefined ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.failWaiting = reject;
        });
      },
      return: () => {
        this.end();
        this.items.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
      // A consumer that fails (e.g. an RPC that broke) ends the queue through here.
      throw: (err?: unknown) => {
        this.end(err);
        this.items.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private wakeDrainWaiters(): void {
    for (let i = this.drainWaiters.length - 1; i >= 0; i--) {
      const waiter = this.drainWaiters[i]!;
      if (this.ended || this.items.length <= waiter.max) {
        this.drainWaiters.splice(i, 1);
        waiter.resolve();
      }
    }
  }
}
