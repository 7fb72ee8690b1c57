// The one interface every builder backend implements (nix, local; guix later): set up
// a build, run it with its time limits, and say where its outputs are on disk.

export interface BuildJob {
  buildId: string;
  derivationPath: string;
  /** The .drv file's text. */
  derivation: string;
  outputs: { name: string; path: string }[];
  /** Zero means no limit. */
  timeoutSeconds: number;
  maxSilentSeconds: number;
}

export interface BuiltOutput {
  name: string;
  /** The output's store path as clients know it, e.g. /nix/store/…-hello. */
  storePath: string;
  /** Where its files are on this machine (differs from storePath for a store elsewhere). */
  diskPath: string;
  /** Full store paths the output refers to. */
  references: string[];
}

export type BuildOutcome =
  | { kind: 'success'; outputs: BuiltOutput[] }
  | { kind: 'failure' | 'timeout' | 'silent-timeout'; message: string }
  /** The coordinator's cache stayed out of reach for the whole retry budget: not the build's fault. */
  | { kind: 'infrastructure'; message: string }
  | { kind: 'setup-failure'; reason: 'missing-inputs' | 'could-not-delete-outputs' | 'other'; missingInputs: string[]; message: string };

/** What a builder returns once the build's signal aborted it (the agent reports nothing). */
export function aborted(): BuildOutcome {
  return { kind: 'failure', message: 'aborted' };
}

export interface BuildContext {
  /** Aborts when the build is canceled or the agent stops. */
  signal: AbortSignal;
  /** Receives the build log as it is written. */
  log(chunk: Buffer): void;
  /** Told when setup (fetching inputs, clearing old outputs) is over and the build itself runs, for the trace. */
  phase?(name: 'build'): void;
}

export interface Builder {
  readonly name: string;
  build(job: BuildJob, ctx: BuildContext): Promise<BuildOutcome>;
}

/** Cache connection details a builder substitutes inputs from. */
export interface CacheInfo {
  /** The cache to try first (read at each fetch: the agent may have moved to another coordinator). */
  url: string;
  publicKey: string;
  /** The other coordinators' caches (replicas: the same contents), tried when `url` is out of reach. */
  mirrors?: () => string[];
  /** How long a fetch retries caches out of reach (default DEFAULT_RETRY_FOR_MS), and where it says so. */
  retry?: { forMs: number; log: { warn(obj: object, msg: string): void } };
  /** Caches asked after it, in priority order (the coordinator's upstreams, then the agent's own). */
  substituters?: Substituter[];
}

/** A binary cache and the keys trusted for it: Nix `name:base64`, or Guix sexp keys. */
export interface Substituter {
  url: string;
  publicKeys: string[];
}
