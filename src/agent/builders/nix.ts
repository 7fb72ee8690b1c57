// The `nix` builder: the machine's Nix builds, and everything a build needs comes from
// the coordinator's binary cache (pull, not push): the .drv closure by `nix copy`, the
// inputs as substitutes while `nix-store --realise` runs.
import { aborted, type BuildContext, type BuildJob, type BuildOutcome, type Builder, type CacheInfo } from './builder.js';
import { lastLines, runProcess } from './process.js';
import { isNixKeyText } from '../../store/narinfo-trust.js';

export interface NixBuilderOptions {
  cache: CacheInfo;
  /**
   * A chroot store root (`nix --store DIR`): outputs live under DIR/nix/store. Unset
   * means the machine's own store.
   */
  storeRoot?: string;
  env?: NodeJS.ProcessEnv;
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
  constructor(private readonly opts: NixBuilderOptions) {}

  private serialFetch<T>(fetch: () => Promise<T>): Promise<T> {
    const result = this.fetching.then(fetch, fetch);
    this.fetching = result.catch(() => undefined);
    return result;
  }

  private storeArgs(): string[] {
    return this.opts.storeRoot ? ['--store', this.opts.storeRoot] : [];
  }

  /** Kiln's cache first, then the upstreams; Nix takes only `name:base64` keys (a Guix key is for the local builder). */
  private cacheArgs(): string[] {
    const { url, publicKey, substituters = [] } = this.opts.cache;
    const keys = [publicKey, ...substituters.flatMap((s) => s.publicKeys.filter(isNixKeyText))].filter(Boolean);
    const args = ['--option', 'substituters', [url, ...substituters.map((s) => s.url)].join(' ')];
    if (keys.length > 0) args.push('--option', 'trusted-public-keys', [...new Set(keys)].join(' '));
    return args;
  }

  private run(command: string, args: string[], ctx: BuildContext, extra: Parameters<typeof runProcess>[2] = {}) {
    return runProcess(command, args, { env: this.opts.env ?? process.env, signal: ctx.signal, ...extra });
  }

  async build(job: BuildJob, ctx: BuildContext): Promise<BuildOutcome> {
    // 1. The derivation and its input derivations, from the coordinator's cache.
    const copy = await this.serialFetch(() => this.run(
      'nix',
      ['copy', '--derivation', '--from', this.opts.cache.url, ...(this.opts.storeRoot ? ['--to', this.opts.storeRoot] : []), ...this.cacheArgs(), job.derivationPath],
      ctx,
      { onOutput: ctx.log },
    ));
    if (ctx.signal.aborted) return aborted();
    if (copy.code !== 0) {
      return { kind: 'setup-failure', reason: 'missing-inputs', missingInputs: [job.derivationPath], message: `could not fetch the derivation: ${lastLines(copy)}` };
    }

    // 2. Which inputs would have to be built here: those are missing (nobody built them).
    const dryRun = await this.run('nix-store', [...this.storeArgs(), '--realise', '--dry-run', ...this.cacheArgs(), job.derivationPath], ctx);
    if (ctx.signal.aborted) return aborted();
    const toBuild = parseDryRun(dryRun.tail).filter((drv) => drv !== job.derivationPath);
    if (toBuild.length > 0) {
      return {
        kind: 'setup-failure',
        reason: 'missing-inputs',
        missingInputs: toBuild,
        message: `inputs are neither in the store nor in the coordinator's cache: ${toBuild.join(' ')}`,
      };
    }

    // 3. Outputs already in this store would make Nix skip the build: delete them.
    for (const output of job.outputs) {
      const valid = await this.run('nix-store', [...this.storeArgs(), '--check-validity', output.path], ctx);
      if (valid.code !== 0) continue;
      const del = await this.run('nix-store', [...this.storeArgs(), '--delete', output.path], ctx);
      if (del.code !== 0) {
        return { kind: 'setup-failure', reason: 'could-not-delete-outputs', missingInputs: [], message: `could not delete ${output.path}: ${lastLines(del)}` };
      }
    }

    // 4. The build itself; Nix enforces the time limits and says which one ran out.
    ctx.phase?.('build');
    const limits: string[] = [];
    if (job.timeoutSeconds) limits.push('--option', 'timeout', String(job.timeoutSeconds));
    if (job.maxSilentSeconds) limits.push('--option', 'max-silent-time', String(job.maxSilentSeconds));
    const realise = await this.run('nix-store', [...this.storeArgs(), '--realise', ...this.cacheArgs(), ...limits, job.derivationPath], ctx, {
      onOutput: ctx.log,
    });
    if (ctx.signal.aborted) return aborted();
    if (realise.code !== 0) {
      if (/timed out after \d+ seconds of silence/.test(realise.tail)) return { kind: 'silent-timeout', message: lastLines(realise) };
      if (/timed out after \d+ seconds/.test(realise.tail)) return { kind: 'timeout', message: lastLines(realise) };
      return { kind: 'failure', message: lastLines(realise) };
    }

    // 5. Where the outputs are, and what they refer to.
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
