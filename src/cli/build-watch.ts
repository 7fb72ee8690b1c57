// Following builds to their end: the builds asked for and the builds of their inputs
// (found by derivation), asked again every second, with one progress line on a terminal
// and a line per change otherwise. Succeeds only if every build of the closure did. A
// coordinator briefly out of reach (a restart) is waited for, not a failure.
import { BuildState, type Build } from '../../gen/kiln/v1/types_pb.js';
import type { AdminClient } from './admin-client.js';
import { buildJson, printJson, stateName } from './output.js';
import { UnavailableRetry } from './unavailable-retry.js';

const FINISHED = new Set([BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED]);
const POLL_MS = 1_000;

/** The build that makes an input derivation: an unfinished or succeeded one first, the newest else. */
async function buildOf(admin: AdminClient, derivationPath: string): Promise<Build | undefined> {
  const { builds } = await admin.listBuilds({ derivationPath, pageSize: 100 });
  return builds.filter((b) => b.state !== BuildState.FAILED && b.state !== BuildState.CANCELED).at(-1) ?? builds.at(-1);
}

function elapsed(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export async function watchBuilds(admin: AdminClient, ids: string[], opts: { json: boolean; tty: boolean }): Promise<boolean> {
  const started = Date.now();
  const builds = new Map<string, Build>();
  const expanded = new Set<string>();
  const shown = new Map<string, BuildState>();
  let pending = [...ids];
  const retry = new UnavailableRetry();
  for (;;) {
    // Unfinished builds asked again; finished ones keep their last answer.
    const unfinished = [...new Set([...pending, ...[...builds.values()].filter((b) => !FINISHED.has(b.state)).map((b) => b.id)])];
    pending = [];
    for (const id of unfinished) {
      const { build } = await retry.run(() => admin.getBuild({ id }));
      builds.set(id, build!);
    }
    for (const b of [...builds.values()]) {
      if (expanded.has(b.id)) continue;
      expanded.add(b.id);
      for (const input of b.inputDerivations) {
        const found = await retry.run(() => buildOf(admin, input));
        if (found && !builds.has(found.id)) builds.set(found.id, found);
      }
    }
    const all = [...builds.values()];
    if (!opts.json && !opts.tty) {
      for (const b of all) {
        if (shown.get(b.id) === b.state) continue;
        shown.set(b.id, b.state);
        console.log(`${b.id} ${stateName(b.state)} ${b.derivationPath}${b.failureReason ? `: ${b.failureReason}` : ''}`);
      }
    }
    const count = (states: BuildState[]) => all.filter((b) => states.includes(b.state)).length;
    const [done, running, failed] = [count([BuildState.SUCCEEDED]), count([BuildState.ALLOCATED, BuildState.STARTED]), count([BuildState.FAILED, BuildState.CANCELED])];
    const waiting = all.length - done - running - failed;
    if (opts.tty && !opts.json) {
      process.stdout.write(`\r\x1b[K${all.length} build(s): ${done} done, ${running} running, ${waiting} waiting, ${failed} failed · ${elapsed(Date.now() - started)}`);
    }
    if (all.every((b) => FINISHED.has(b.state))) {
      if (opts.tty && !opts.json) process.stdout.write('\n');
      if (opts.json) printJson({ succeeded: failed === 0, builds: all.map(buildJson) });
      else {
        for (const b of all.filter((x) => x.state !== BuildState.SUCCEEDED)) if (opts.tty) console.log(`${stateName(b.state)}: ${b.id} ${b.derivationPath}${b.failureReason ? `: ${b.failureReason}` : ''}`);
        console.log(`${done} succeeded, ${failed} failed or canceled, in ${elapsed(Date.now() - started)}`);
      }
      return failed === 0;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
