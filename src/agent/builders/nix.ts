// The `nix` builder: the machine's Nix builds, and everything a build needs comes from
// the coordinator's binary cache (pull, not push): the .drv closure by `nix copy`, the
// inputs' outputs by `nix-store --realise` of their paths, then the build. A fetch that
// failed because the cache was out of reach is run again (Nix gives up on a cache within
// seconds, and builds what it could not substitute) for the agent's retry budget.
import { readFile } from 'node:fs/promises';
import { parseDerivation } from '../../store/derivation.js';
import { DEFAULT_RETRY_FOR_MS, RetryBudgetSpent, retryTransient } from '../backoff.js';
import { aborted, type BuildContext, type BuildJob, type BuildOutcome, type Builder, type CacheInfo } from './builder.js';
import { agentNixEnv, type AgentNixSettings } from './nix-settings.js';
import { isNixKeyText } from '../../store/narinfo-trust.js';
import { lastLines, runProcess, type ProcessResult } from './process.js';

/**
 * What Nix 2.8 says when a binary cache is out of reach: curl's errors, an HTTP 5xx, and
 * the warning with which it then carries on without the cache.
 */
const CACHE_OUT_OF_REACH =
  /unable to download '[^']*': (Couldn't connect|Failed to connect|Connection refused|Connection reset|Empty reply|Recv failure|Send failure|Timeout was reached|Operation timed out|Failure when receiving|Server returned nothing|HTTP error 5\d\d|HTTP error 429)|some substitutes for the outputs of derivation '[^']*' failed/i;

/** A Nix run that failed (or misled) because the coordinator's cache was out of reach. */
class CacheOutOfReach extends Error {
  override name = 'CacheOutOfReach';
}

export interface NixBuilderOptions {
  cache: CacheInfo;
  /**
   * A chroot store root (`nix --store DIR`): outputs live under DIR/nix/store. Unset
   * means the machine's own store.
   */
  storeRoot?: string;
  env?: NodeJS.ProcessEnv;
  /** The agent's own Nix cache directory and features (nix-settings.ts). */
  settings?: AgentNixSettings;
}

export class NixBuilder implements Builder {
  readonly name = 'nix';
  /**
   * Fetches run one at a time. Nix 2.8 misreads a multi-path copy when another process
   * makes one of the paths valid meanwhile ("not an absolute path: 'nix-archive-1'"),
   * and two processes opening a binary cache for the first time at once can break its
   * narinfo disk cache. Builds themselves still run in parallel.
   */
  private fetching: Promise<unknown> = Promise.resolve();
  private readonly env: NodeJS.ProcessEnv;
  constructor(private readonly opts: NixBuilderOptions) {
    this.env = agentNixEnv(opts.env ?? process.env, opts.settings ?? {});
  }

  private serialFetch<T>(fetch: () => Promise<T>): Promise<T> {
    const result = this.fetching.then(fetch, fetch);
    this.fetching = result.catch(() => undefined);
    return result;
  }

  private storeArgs(): string[] {
    return this.opts.storeRoot ? ['--store', this.opts.storeRoot] : [];
  }

  /**
   * The current coordinator's cache first, then the other replicas', then the upstreams.
   * No narinfo miss is remembered (Nix would for an hour, past an outage that made one),
   * and a cache that does not answer is given up quickly: the agent retries, with the
   * next cache. Nix takes only `name:base64` keys (a Guix key is for the local builder).
   */
  private cacheArgs(): string[] {
    const { url, publicKey, substituters = [] } = this.opts.cache;
    const caches = [url, ...(this.opts.cache.mirrors?.() ?? []), ...substituters.map((s) => s.url)];
    const keys = [publicKey, ...substituters.flatMap((s) => s.publicKeys.filter(isNixKeyText))].filter(Boolean);
    const args = ['--option', 'substituters', [...new Set(caches)].join(' '), '--option', 'narinfo-cache-negative-ttl', '0', '--option', 'connect-timeout', '5'];
    if (keys.length > 0) args.push('--option', 'trusted-public-keys', [...new Set(keys)].join(' '));
    return args;
  }

  /**
   * Runs a fetching step until `outOfReach` stops saying the cache was out of reach,
   * for the retry budget; its last result otherwise.
   */
  private fetchStep(what: string, ctx: BuildContext, step: () => Promise<ProcessResult>, outOfReach: (r: ProcessResult) => boolean): Promise<ProcessResult> {
    const retry = this.opts.cache.retry;
    return retryTransient(
      {
        what: `${what} from the coordinator's cache`,
        signal: ctx.signal,
        budgetMs: retry?.forMs ?? DEFAULT_RETRY_FOR_MS,
        log: retry?.log ?? { warn: () => undefined },
        initialMs: 1_000,
        transient: (err) => err instanceof CacheOutOfReach,
      },
      async () => {
        const result = await step();
        if (!ctx.signal.aborted && outOfReach(result)) throw new CacheOutOfReach(lastLines(result));
        return result;
      },
    );
  }

  async build(job: BuildJob, ctx: BuildContext): Promise<BuildOutcome> {
    try {
      return await this.steps(job, ctx);
    } catch (err) {
      if (err instanceof RetryBudgetSpent) return { kind: 'infrastructure', message: err.message };
      throw err;
    }
  }

  private run(command: string, args: string[], ctx: BuildContext, extra: Parameters<typeof runProcess>[2] = {}) {
    return runProcess(command, args, { env: this.env, signal: ctx.signal, ...extra });
  }

  private async steps(job: BuildJob, ctx: BuildContext): Promise<BuildOutcome> {
    const failedOnCache = (r: ProcessResult) => r.code !== 0 && CACHE_OUT_OF_REACH.test(r.tail);
    // 1. The derivation and its input derivations, from the coordinator's cache.
    const copy = await this.fetchStep('the derivation', ctx, () => this.serialFetch(() => this.run(
      'nix',
      ['copy', '--derivation', '--from', this.opts.cache.url, ...(this.opts.storeRoot ? ['--to', this.opts.storeRoot] : []), ...this.cacheArgs(), job.derivationPath],
      ctx,
      { onOutput: ctx.log },
    )), failedOnCache);
    if (ctx.signal.aborted) return aborted();
    if (copy.code !== 0) {
      return { kind: 'setup-failure', reason: 'missing-inputs', missingInputs: [job.derivationPath], message: `could not fetch the derivation: ${lastLines(copy)}` };
    }

    // 2. Which inputs would have to be built here: those are missing (nobody built them).
    // A cache out of reach makes every input look missing: asked again until it answers.
    const toBuildOf = (r: ProcessResult) => parseDryRun(r.tail).filter((drv) => drv !== job.derivationPath);
    const dryRun = await this.fetchStep('the inputs\' status', ctx, () => this.run('nix-store', [...this.storeArgs(), '--realise', '--dry-run', ...this.cacheArgs(), job.derivationPath], ctx), (r) =>
      toBuildOf(r).length > 0 && /unable to download/.test(r.tail),
    );
    if (ctx.signal.aborted) return aborted();
    const toBuild = toBuildOf(dryRun);
    if (toBuild.length > 0) {
      return {
        kind: 'setup-failure',
        reason: 'missing-inputs',
        missingInputs: toBuild,
        message: `inputs are neither in the store nor in the coordinator's cache: ${toBuild.join(' ')}`,
      };
    }

    // 3. The inputs' outputs, fetched on their own: a cache gone now would make the build
    // below build them here instead.
    const inputPaths = await this.inputOutputs(job);
    if (inputPaths.length > 0) {
      const fetch = await this.fetchStep('the inputs', ctx, () => this.serialFetch(() => this.run('nix-store', [...this.storeArgs(), '--realise', ...this.cacheArgs(), ...inputPaths], ctx, { onOutput: ctx.log })), failedOnCache);
      if (ctx.signal.aborted) return aborted();
      if (fetch.code !== 0) {
        return { kind: 'setup-failure', reason: 'missing-inputs', missingInputs: [], message: `could not fetch the inputs: ${lastLines(fetch)}` };
      }
    }

    // 4. Outputs already in this store would make Nix skip the build: delete them.
    for (const output of job.outputs) {
      const valid = await this.run('nix-store', [...this.storeArgs(), '--check-validity', output.path], ctx);
      if (valid.code !== 0) continue;
      const del = await this.run('nix-store', [...this.storeArgs(), '--delete', output.path], ctx);
      if (del.code !== 0) {
        return { kind: 'setup-failure', reason: 'could-not-delete-outputs', missingInputs: [], message: `could not delete ${output.path}: ${lastLines(del)}` };
      }
    }

    // 5. The build itself; Nix enforces the time limits and says which one ran out. Its
    // inputs are all here now: no cache is asked (one that fails would fail the build).
    ctx.phase?.('build');
    const limits: string[] = [];
    if (job.timeoutSeconds) limits.push('--option', 'timeout', String(job.timeoutSeconds));
    if (job.maxSilentSeconds) limits.push('--option', 'max-silent-time', String(job.maxSilentSeconds));
    const realise = await this.run('nix-store', [...this.storeArgs(), '--realise', '--option', 'substituters', '', ...limits, job.derivationPath], ctx, {
      onOutput: ctx.log,
    });
    if (ctx.signal.aborted) return aborted();
    if (realise.code !== 0) {
      if (/timed out after \d+ seconds of silence/.test(realise.tail)) return { kind: 'silent-timeout', message: lastLines(realise) };
      if (/timed out after \d+ seconds/.test(realise.tail)) return { kind: 'timeout', message: lastLines(realise) };
      return { kind: 'failure', message: lastLines(realise) };
    }

    // 6. Where the outputs are, and what they refer to.
    const outputs = [];
    for (const output of job.outputs) {
      const refs = await this.run('nix-store', [...this.storeArgs(), '--query', '--references', output.path], ctx, { keepStdout: true });
      if (refs.code !== 0) return { kind: 'failure', message: `built, but cannot query ${output.path}: ${lastLines(refs)}` };
      outputs.push({
        name: output.name,
        storePath: output.path,
        diskPath: (this.opts.storeRoot ?? '') + output.path,
        references: refs.stdout.split('\n').filter(Boolean).sort(),
      });
    }
    return { kind: 'success', outputs };
  }

  /** The output paths of the build's input derivations (read from the .drv files fetched in step 1). */
  private async inputOutputs(job: BuildJob): Promise<string[]> {
    const drv = parseDerivation(job.derivation);
    const paths: string[] = [];
    for (const [inputPath, names] of drv.inputDrvs) {
      const input = parseDerivation(await readFile((this.opts.storeRoot ?? '') + inputPath));
      for (const name of names) {
        const path = input.outputs.get(name)?.path;
        if (path) paths.push(path);
      }
    }
    return paths;
  }
}

/** Derivations that `nix-store --realise --dry-run` says it would build. */
export function parseDryRun(output: string): string[] {
  const lines = output.split('\n');
  const start = lines.findIndex((l) => /derivations? will be built:$/.test(l.trim()));
  if (start < 0) return [];
  const drvs: string[] = [];
  for (const line of lines.slice(start + 1)) {
    const m = /^\s+(\/\S+\.drv)$/.exec(line);
    if (!m) break;
    drvs.push(m[1]!);
  }
  return drvs;
}
