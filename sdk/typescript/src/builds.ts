// The loops around the AdminService that scripts write: every build of a listing across
// its pages, and waiting until a build has ended.
import { BuildState, type Build } from '../../../gen/kiln/v1/types_pb.js';
import { delay } from '../../../src/backoff.js';
import type { AdminClient } from './admin-client.js';

export const FINAL_STATES: readonly BuildState[] = [BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED];

/** Every build that matches, in the coordinator's order, asking for one page (pageSize, default 100) at a time. */
export interface BuildFilter {
  states?: BuildState[];
  tags?: { key: string; value: string }[];
  derivationPath?: string;
  /** Builds per ListBuilds call. */
  pageSize?: number;
}

export async function* listAllBuilds(admin: AdminClient, filter: BuildFilter = {}): AsyncGenerator<Build> {
  let pageToken = '';
  do {
    const page = await admin.listBuilds({ pageSize: 100, ...filter, pageToken });
    yield* page.builds;
    pageToken = page.nextPageToken;
  } while (pageToken);
}

export interface WaitOptions {
  /** Give up after this long (default one hour). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Called with the build whenever its state changes. */
  onChange?: (build: Build) => void;
}

/**
 * Asks for the build until it is succeeded, failed or canceled (every 200 ms at first, at
 * most every 5 s) and returns it; rejects after timeoutMs, or when the signal aborts.
 */
export async function waitForBuild(admin: AdminClient, id: string, opts: WaitOptions = {}): Promise<Build> {
  const timeoutMs = opts.timeoutMs ?? 3_600_000;
  const deadline = Date.now() + timeoutMs;
  let interval = 200;
  let last: BuildState | undefined;
  for (;;) {
    opts.signal?.throwIfAborted();
    const { build } = await admin.getBuild({ id }, { signal: opts.signal });
    if (!build) throw new Error(`the coordinator returned no build for ${id}`);
    if (build.state !== last) {
      last = build.state;
      opts.onChange?.(build);
    }
    if (FINAL_STATES.includes(build.state)) return build;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`build ${id} is still ${BuildState[build.state].toLowerCase()} after ${timeoutMs} ms`);
    await delay(Math.min(interval, left), opts.signal);
    interval = Math.min(interval * 1.5, 5_000);
  }
}
