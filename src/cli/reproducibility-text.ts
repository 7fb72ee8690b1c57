// How `kiln build show` and `kiln build check` show a reproducibility check: the state,
// each output's NAR hash per agent, and the files that differ.
import { toJson } from '@bufbuild/protobuf';
import { ReproducibilitySchema, ReproducibilityState, type Reproducibility } from '../../gen/kiln/v1/admin_pb.js';
import type { Build } from '../../gen/kiln/v1/types_pb.js';
import { buildJson } from './output.js';

export function reproducibilityStateName(state: ReproducibilityState): string {
  return (ReproducibilityState[state] ?? 'UNSPECIFIED').toLowerCase();
}

/** The build's JSON, with its check under `reproducibility` when it has one. */
export function checkedBuildJson(build: Build, check: Reproducibility | undefined): unknown {
  const json = buildJson(build) as Record<string, unknown>;
  return check ? { ...json, reproducibility: toJson(ReproducibilitySchema, check, { alwaysEmitImplicit: true }) } : json;
}

export function reproducibilityText(r: Reproducibility): string {
  const by = r.byTag ? ` differing in tag ${r.byTag}` : '';
  const lines = [`reproducibility ${reproducibilityStateName(r.state)} (${r.agents} agents${by})${r.message ? `: ${r.message}` : ''}`];
  for (const o of r.outputs) {
    lines.push(`  output ${o.name} ${o.path}: ${o.reproducible ? 'same' : 'DIFFERS'}`);
    for (const res of o.results) {
      const tag = r.byTag ? ` ${r.byTag}=${res.tagValue}` : '';
      lines.push(`    ${res.position}. ${res.narHash} ${res.narSize} bytes  agent ${res.agentId}${tag}  ${res.narUrl}`);
    }
    if (o.differencesError) lines.push(`    (${o.differencesError})`);
    for (const d of o.differences) {
      lines.push(`    differs: ${d.path || '(the output itself)'}`);
      for (const v of d.versions) {
        const at = v.firstDifference >= 0n ? `  from byte ${v.firstDifference}: ${JSON.stringify(v.excerpt)}` : '';
        const hash = v.type === 'directory' || v.type === 'missing' ? '' : ` ${v.type === 'symlink' ? '-> ' : 'sha256:'}${v.sha256}`;
        lines.push(`      ${v.position}. ${v.type} ${v.size} bytes${hash}${at}`);
      }
    }
  }
  return lines.join('\n');
}
