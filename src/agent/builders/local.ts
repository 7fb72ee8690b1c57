// The `local` builder: kiln's own executor, for machines without Nix. It keeps a store of
// its own (local-store.ts), fetches a build's inputs into it from the coordinator's cache,
// runs the derivation's builder with its arguments and environment as Nix would (but
// outside any sandbox), and scans and registers the outputs.
import { cpus, tmpdir } from 'node:os';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { derivationName, parseDerivation, type Derivation } from '../../store/derivation.js';
import { fixedOutput } from '../../store/output-paths.js';
import { parseStorePath } from '../../store/store-path.js';
import { aborted, type BuildContext, type BuildJob, type BuildOutcome, type Builder, type CacheInfo } from './builder.js';
import { buildEnvironment } from './local/build-env.js';
import { builderCommand, hostTools, type HostTools } from './local/builder-command.js';
import { collectOutputs } from './local/built-outputs.js';
import { RetryBudgetSpent } from '../backoff.js';
import { CacheClient } from './local/cache-client.js';
import { realiseInputs } from './local/input-closure.js';
import { LocalStore } from './local/local-store.js';
import { lastLines, runProcess } from './process.js';
import { deleteTree } from './local/store-tree.js';
import { Substituter } from './local/substituter.js';

export const DEFAULT_STORE_DIR = '/nix/store';

export interface LocalBuilderOptions {
  cache: CacheInfo;
  /** The store directory the derivations name; default /nix/store. */
  storeDir?: string;
  /** Keep the store's files under this root (ROOT/nix/store) instead of in the store directory itself. */
  storeRoot?: string;
  /** NIX_BUILD_CORES; default this machine's CPU count. */
  cores?: number;
  /** The agent's environment, for fixed-output derivations' impureEnvVars and finding unshare. */
  hostEnv?: NodeJS.ProcessEnv;
  /** Where build directories are made; default the system's temporary directory. */
  buildDirParent?: string;
}

/** A build step that ended the build early. */
class Stop {
  constructor(readonly outcome: BuildOutcome) {}
}

export class LocalBuilder implements Builder {
  readonly name = 'local';
  private readonly store: LocalStore;
  private readonly substituter: Substituter;
  private readonly hostEnv: NodeJS.ProcessEnv;
  private setup: Promise<HostTools | undefined> | undefined;

  constructor(private readonly opts: LocalBuilderOptions) {
    this.store = new LocalStore({ storeDir: opts.storeDir ?? DEFAULT_STORE_DIR, root: opts.storeRoot });
    const cache = opts.cache;
    // The coordinator's cache is read through `cache` itself: its URL moves with the agent's replica.
    const own = new CacheClient({ get url() { return cache.url; }, publicKeys: [cache.publicKey], mirrors: cache.mirrors, retry: cache.retry });
    this.substituter = new Substituter(this.store, [own, ...(cache.substituters ?? []).map((c) => new CacheClient(c))]);
    this.hostEnv = opts.hostEnv ?? process.env;
  }

  async build(job: BuildJob, ctx: BuildContext): Promise<BuildOutcome> {
    try {
      return await this.steps(job, ctx);
    } catch (err) {
      if (err instanceof Stop) return ctx.signal.aborted ? aborted() : err.outcome;
      if (ctx.signal.aborted) return aborted();
      return { kind: 'failure', message: `the local builder failed on ${job.derivationPath}: ${(err as Error).message}` };
    }
  }

  private async steps(job: BuildJob, ctx: BuildContext): Promise<BuildOutcome> {
    const tools = await this.prepareStore(job);
    const drv = parseDerivation(job.derivation, { storeDir: this.store.storeDir });
    const inputs = await this.fetchInputs(drv, ctx.signal);
    await this.deleteOutputs(job);
    ctx.phase?.('build');
    try {
      await this.runBuilder(job, drv, tools, ctx);
      const collected = await collectOutputs(job, drv, this.store, inputs, ctx.signal);
      if (collected.kind === 'failure') throw new Stop(collected);
      return collected;
    } catch (err) {
      // Nothing of a failed build stays in the store.
      await Promise.all(job.outputs.map((o) => this.store.exclusive(o.path, () => this.store.delete(o.path)))).catch(() => undefined);
      throw err;
    }
  }

  /** The store's directories, and for a store under a root the mountpoint and unshare. */
  private async prepareStore(job: BuildJob): Promise<HostTools | undefined> {
    const { storeDir } = parseStorePath(job.derivationPath);
    if (storeDir !== this.store.storeDir) {
      throw setupFailure(`${job.derivationPath} is not in this agent's store ${this.store.storeDir} (start the agent with --store-dir ${storeDir})`);
    }
    this.setup ??= (async () => {
      await this.store.init();
      if (!this.opts.storeRoot) return undefined;
      // The literal store directory must exist to be mounted on.
      await mkdir(this.store.storeDir, { recursive: true });
      return hostTools(this.hostEnv.PATH);
    })();
    try {
      return await this.setup;
    } catch (err) {
      this.setup = undefined; // perhaps fixed by the next build
      throw setupFailure(`cannot set up the store ${this.store.diskStoreDir}: ${(err as Error).message}`);
    }
  }

  private async fetchInputs(drv: Derivation, signal: AbortSignal): Promise<Set<string>> {
    let inputs;
    try {
      inputs = await realiseInputs(drv, this.store, this.substituter, signal);
    } catch (err) {
      if (err instanceof RetryBudgetSpent) throw new Stop({ kind: 'infrastructure', message: `cannot fetch the inputs: ${err.message}` });
      throw setupFailure(`cannot fetch the inputs from the caches: ${(err as Error).message}`);
    }
    if (inputs.kind === 'missing') {
      throw new Stop({
        kind: 'setup-failure',
        reason: 'missing-inputs',
        missingInputs: inputs.missing,
        message: `inputs are neither in this store nor in the coordinator's cache: ${inputs.missing.join(' ')}`,
      });
    }
    return inputs.paths;
  }

  private async deleteOutputs(job: BuildJob): Promise<void> {
    for (const output of job.outputs) {
      try {
        await this.store.exclusive(output.path, () => this.store.delete(output.path));
      } catch (err) {
        throw new Stop({ kind: 'setup-failure', reason: 'could-not-delete-outputs', missingInputs: [], message: `could not delete ${output.path}: ${(err as Error).message}` });
      }
    }
  }

  private async runBuilder(job: BuildJob, drv: Derivation, tools: HostTools | undefined, ctx: BuildContext): Promise<void> {
    if (!drv.builder.startsWith('/')) {
      throw new Stop({ kind: 'failure', message: `builder ${JSON.stringify(drv.builder)} is not an absolute path; the local builder runs no builtin builders` });
    }
    const buildDir = await mkdtemp(join(this.opts.buildDirParent ?? tmpdir(), `kiln-build-${derivationName(job.derivationPath)}-`));
    try {
      let env;
      try {
        env = buildEnvironment(drv, {
          buildDir,
          storeDir: this.store.storeDir,
          cores: this.opts.cores ?? cpus().length,
          fixedOutput: fixedOutput(drv) !== undefined,
          hostEnv: this.hostEnv,
        });
      } catch (err) {
        throw new Stop({ kind: 'failure', message: (err as Error).message });
      }
      for (const file of env.files) await writeFile(file.path, file.contents);
      const command = builderCommand(
        drv.builder,
        drv.args,
        env.env,
        tools && { store: { from: this.store.diskStoreDir, to: this.store.storeDir }, tools, asRoot: process.getuid?.() === 0 },
      );
      const result = await runProcess(command.command, command.args, {
        cwd: buildDir,
        env: env.env,
        signal: ctx.signal,
        onOutput: ctx.log,
        timeoutMs: job.timeoutSeconds * 1000,
        silenceMs: job.maxSilentSeconds * 1000,
      });
      if (result.stoppedBy === 'abort') throw new Stop(aborted());
      if (result.stoppedBy === 'timeout') throw new Stop({ kind: 'timeout', message: `${job.derivationPath} timed out after ${job.timeoutSeconds} seconds` });
      if (result.stoppedBy === 'silence') {
        throw new Stop({ kind: 'silent-timeout', message: `${job.derivationPath} timed out after ${job.maxSilentSeconds} seconds of silence` });
      }
      if (result.code !== 0) {
        const how = result.code !== null ? `with exit code ${result.code}` : `due to signal ${result.signal}`;
        throw new Stop({ kind: 'failure', message: `builder for '${job.derivationPath}' failed ${how}; last log lines:\n${lastLines(result, 10)}` });
      }
    } finally {
      await deleteTree(buildDir);
    }
  }
}

function setupFailure(message: string): Stop {
  return new Stop({ kind: 'setup-failure', reason: 'other', missingInputs: [], message });
}
