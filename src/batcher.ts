// Runs many calls of one operation as few (group commit): calls made while a run is in
// progress wait and go together in the next one. When calls are rare each runs alone and
// at once; when hundreds of agents report at the same time, each run takes everything
// that queued meanwhile, so the database does one statement for many reports.

export class Batcher<In, Out> {
  private queue: { input: In; resolve(out: Out): void; reject(err: unknown): void }[] = [];
  private running = false;

  /**
   * `run` gets the inputs in call order and gives one output per input. `maxBatch`
   * bounds a run's size.
   */
  constructor(
    private readonly run: (inputs: In[]) => Promise<Out[]>,
    private readonly maxBatch = 500,
  ) {}

  call(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        try {
          const outs = await this.run(batch.map((b) => b.input));
          batch.forEach((b, i) => b.resolve(outs[i]!));
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }
}

/** One batcher per key (a database), made when first asked for. */
export function batcherPer<K extends object, In, Out>(make: (key: K) => Batcher<In, Out>): (key: K) => Batcher<In, Out> {
  const batchers = new WeakMap<K, Batcher<In, Out>>();
  return (key) => {
    let batcher = batchers.get(key);
    if (!batcher) {
      batcher = make(key);
      batchers.set(key, batcher);
    }
    return batcher;
  };
}
