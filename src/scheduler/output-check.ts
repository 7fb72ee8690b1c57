// Whether a build's success report agrees with the cache: every output of the derivation
// is stored, and the NAR hash and size the agent reports for it are those of the stored
// NAR. A success that disagrees is refused, so that a build never succeeds with outputs
// the cache does not serve as reported.
import { Hash } from '../store/hash.js';

export interface ExpectedOutput {
  name: string;
  path: string;
  /** The stored NAR, if the path is in the cache. */
  stored?: { narHash: string; narSize: number; buildId: string | null };
}

export interface ReportedOutput {
  name: string;
  path: string;
  narHash: string;
  narSize: number;
}

/** What is wrong with the report, one sentence per output; empty when it agrees. */
export function outputProblems(buildId: string, expected: ExpectedOutput[], reported: ReportedOutput[]): string[] {
  const problems: string[] = [];
  const byName = new Map(reported.map((r) => [r.name, r]));
  for (const r of reported) {
    if (!expected.some((e) => e.name === r.name)) problems.push(`the derivation has no output ${JSON.stringify(r.name)}, which the report names`);
  }
  for (const e of expected) {
    const r = byName.get(e.name);
    const what = `output ${e.name} (${e.path})`;
    if (!e.stored) {
      problems.push(`${what} was not uploaded`);
    } else if (!r) {
      problems.push(`${what} is not in the report`);
    } else if (r.path !== e.path) {
      problems.push(`${what} is reported as ${r.path}`);
    } else if (!sameNar(e.stored, r)) {
      const by = e.stored.buildId && e.stored.buildId !== buildId ? `, uploaded by build ${e.stored.buildId}` : '';
      problems.push(`${what} differs: the report says ${r.narHash}, ${r.narSize} bytes; the cache holds ${e.stored.narHash}, ${e.stored.narSize} bytes${by}`);
    }
  }
  return problems;
}

function sameNar(stored: { narHash: string; narSize: number }, reported: ReportedOutput): boolean {
  if (stored.narSize !== reported.narSize) return false;
  try {
    return Hash.parse(reported.narHash).equals(Hash.parse(stored.narHash));
  } catch {
    return false; // a reported hash that does not parse matches nothing
  }
}
