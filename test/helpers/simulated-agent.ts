// A simulated agent: the real AgentService protocol over a real gRPC stream, without a
// builder. It says Hello, and for each AssignBuild reports it started and reports success
// with a small NAR (one LZ4 frame) for every output, carried in the report as the real
// agent carries small outputs (or uploaded by UploadOutput each, with `upload`), so that a
// coordinator (or several replicas) can be driven with thousands of builds: the
// scheduling benchmark and the replica test use it. It never holds more builds than its
// slots.
import { createHash } from 'node:crypto';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import type { Client } from '@connectrpc/connect';
import { compressFrame } from 'lz4-napi';
import { AgentService, BuildResult, ConnectRequestSchema, type AssignBuild, type ConnectRequest } from '../../gen/kiln/v1/agent_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { AsyncQueue } from '../../src/async-queue.js';
import { encodeBase32 } from '../../src/store/base32.js';
import { narOfFile } from '../../src/store/nar-file.js';

export interface SimulatedAgentOptions {
  url: string;
  agentId: string;
  password: string;
  systems: string[];
  slots: number;
  tags?: { key: string; value: string }[];
  /** Called when an assignment arrives, before anything is reported. */
  onAssigned?(assign: AssignBuild, at: number): void;
  /** Upload each output by its own UploadOutput call instead of sending it with the report. */
  upload?: boolean;
  /**
   * Called when an output is known to be in the cache (its upload returned, or the report
   * carrying it was acknowledged): builds waiting only on it are ready.
   */
  onStored?(buildId: string, outputName: string, at: number): void;
  /** Called when the coordinator acknowledged a build's success. */
  onFinished?(buildId: string, at: number): void;
  /**
   * Called when building an assignment failed (an upload refused; `buildId` says which)
   * or the control stream broke; without it the error is thrown.
   */
  onError?(err: unknown, buildId?: string): void;
}

export class SimulatedAgent {
  private readonly client: Client<typeof AgentService>;
  private readonly outbox = new AsyncQueue<ConnectRequest>();
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  /** Builds assigned to this agent, in order. */
  readonly assigned: string[] = [];
  holding = 0;
  maxHolding = 0;
  /** When the coordinator's Welcome arrived (performance.now()). */
  welcomedAt = NaN;
  /** Outputs sent with a success report not yet acknowledged, by build. */
  private readonly inlineOutputs = new Map<string, string[]>();

  constructor(private readonly opts: SimulatedAgentOptions) {
    this.client = agentClient(opts.url, opts.agentId, opts.password);
  }

  /** Connects; resolves when the coordinator has welcomed the agent. */
  async start(): Promise<void> {
    let welcomed!: () => void;
    let failed!: (err: unknown) => void;
    const welcome = new Promise<void>((resolve, reject) => {
      welcomed = resolve;
      failed = reject;
    });
    this.send({
      case: 'hello',
      value: { systems: this.opts.systems, maxParallelBuilds: this.opts.slots, tags: this.opts.tags ?? [], version: 'simulated', heldBuildIds: [] },
    });
    this.running = (async () => {
      for await (const response of this.client.connect(this.outbox, { signal: this.abort.signal })) {
        const m = response.message;
        if (m.case === 'welcome') {
          this.welcomedAt = performance.now();
          welcomed();
        }
        else if (m.case === 'assignBuild') {
          const assign = m.value;
          this.build(assign).catch((err: unknown) => {
            if (!this.opts.onError) throw err;
            this.opts.onError(err, assign.buildId);
          });
        }
        else if (m.case === 'acknowledged') {
          const at = performance.now();
          for (const name of this.inlineOutputs.get(m.value.buildId) ?? []) this.opts.onStored?.(m.value.buildId, name, at);
          this.inlineOutputs.delete(m.value.buildId);
          this.opts.onFinished?.(m.value.buildId, at);
        }
      }
    })().catch((err: unknown) => {
      failed(err);
      if (this.abort.signal.aborted) return;
      if (!this.opts.onError) throw err;
      this.opts.onError(err);
    });
    await welcome;
  }

  private send(message: MessageInitShape<typeof ConnectRequestSchema>['message']): void {
    this.outbox.push(create(ConnectRequestSchema, { message }));
  }

  private async build(assign: AssignBuild): Promise<void> {
    this.holding++;
    this.maxHolding = Math.max(this.maxHolding, this.holding);
    this.assigned.push(assign.buildId);
    this.opts.onAssigned?.(assign, performance.now());
    this.send({ case: 'buildStarted', value: { buildId: assign.buildId } });
    const outputs = [];
    for (const output of assign.outputs) {
      if (this.opts.upload) {
        outputs.push(await uploadTinyOutput(this.client, assign.buildId, output, this.abort.signal));
        this.opts.onStored?.(assign.buildId, output.name, performance.now());
      } else {
        outputs.push(await tinyOutput(assign.buildId, output));
      }
    }
    if (!this.opts.upload) this.inlineOutputs.set(assign.buildId, assign.outputs.map((o) => o.name));
    this.holding--;
    this.send({ case: 'buildFinished', value: { buildId: assign.buildId, result: BuildResult.SUCCESS, outputs, message: '' } });
  }

  async stop(): Promise<void> {
    this.outbox.end();
    this.abort.abort();
    await this.running?.catch(() => undefined);
  }
}

interface TinyOutput {
  name: string;
  path: string;
  narHash: string;
  narSize: bigint;
  references: string[];
  /** The NAR as one LZ4 frame. */
  narLz4: Buffer;
}

/** A tiny NAR (one file naming the build and output) as an output of the build, in one LZ4 frame, as BuildFinished carries it. */
export async function tinyOutput(buildId: string, output: { name: string; path: string }): Promise<TinyOutput> {
  const nar = narOfFile(Buffer.from(`${buildId} ${output.name}\n`));
  const narHash = `sha256:${encodeBase32(createHash('sha256').update(nar).digest())}`;
  return { name: output.name, path: output.path, narHash, narSize: BigInt(nar.length), references: [], narLz4: await compressFrame(nar) };
}

/** Uploads a tiny output by UploadOutput and returns what BuildFinished reports for it (nothing inline). */
export async function uploadTinyOutput(
  client: Client<typeof AgentService>,
  buildId: string,
  output: { name: string; path: string },
  signal?: AbortSignal,
): Promise<Omit<TinyOutput, 'narLz4'>> {
  const { narLz4: frame, ...info } = await tinyOutput(buildId, output);
  const { narHash, narSize } = info;
  await client.uploadOutput(
    (async function* () {
      yield { message: { case: 'header' as const, value: { buildId, outputName: output.name, storePath: output.path, offset: 0n, references: [] } } };
      yield { message: { case: 'chunk' as const, value: frame } };
      yield { message: { case: 'trailer' as const, value: { narHash, narSize } } };
    })(),
    { signal },
  );
  return info;
}
