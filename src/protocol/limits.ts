// The sizes and counts the coordinator accepts from a client, so that one request cannot
// hold its event loop or its memory: message bytes per RPC method, the size and the
// counts of one .drv, tags per build and per agent. The operator may raise or lower each
// in the config file (section "limits"); the defaults are far above what real
// derivations and farms need.

export interface DerivationLimits {
  /** Bytes of one .drv text. */
  bytes: number;
  inputDrvs: number;
  inputSrcs: number;
  env: number;
  outputs: number;
  args: number;
}

export interface InputLimits {
  /**
   * The largest message (bytes) each RPC method takes, by method name (e.g.
   * "SubmitBuilds"); methods not named take `defaultMessageBytes`.
   */
  messageBytes: Record<string, number>;
  defaultMessageBytes: number;
  derivation: DerivationLimits;
  tagsPerBuild: number;
  tagsPerAgent: number;
}

const MiB = 1 << 20;

export const DEFAULT_INPUT_LIMITS: InputLimits = {
  messageBytes: {
    SubmitBuild: 16 * MiB,
    // A batch carries many builds' derivation closures.
    SubmitBuilds: 64 * MiB,
    // One message of an upload stream: an LZ4 frame of about 1 MiB, with room.
    UploadOutput: 8 * MiB,
    UploadLog: 8 * MiB,
    UploadSource: 8 * MiB,
    // BuildFinished may carry small NARs inline.
    Connect: 8 * MiB,
    QueryMissingPaths: 16 * MiB,
  },
  defaultMessageBytes: 1 * MiB,
  derivation: { bytes: 4 * MiB, inputDrvs: 5_000, inputSrcs: 5_000, env: 5_000, outputs: 64, args: 5_000 },
  tagsPerBuild: 64,
  tagsPerAgent: 64,
};

/** The limit of one method's messages. */
export function messageLimit(limits: InputLimits, method: string): number {
  return limits.messageBytes[method] ?? limits.defaultMessageBytes;
}

/** Merges an operator's partial limits over the defaults. */
export function inputLimits(given: Partial<Omit<InputLimits, 'derivation'>> & { derivation?: Partial<DerivationLimits> } = {}): InputLimits {
  return {
    messageBytes: { ...DEFAULT_INPUT_LIMITS.messageBytes, ...given.messageBytes },
    defaultMessageBytes: given.defaultMessageBytes ?? DEFAULT_INPUT_LIMITS.defaultMessageBytes,
    derivation: { ...DEFAULT_INPUT_LIMITS.derivation, ...given.derivation },
    tagsPerBuild: given.tagsPerBuild ?? DEFAULT_INPUT_LIMITS.tagsPerBuild,
    tagsPerAgent: given.tagsPerAgent ?? DEFAULT_INPUT_LIMITS.tagsPerAgent,
  };
}
