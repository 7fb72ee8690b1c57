// How the CLI shows builds and agents: aligned text for people, JSON for scripts.
import { toJson } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { AgentSchema, BuildSchema, BuildState, WaitKind, type Agent, type Build, type Tag } from '../../gen/kiln/v1/types_pb.js';

export function stateName(state: BuildState): string {
  return (BuildState[state] ?? 'UNSPECIFIED').toLowerCase();
}

const tagText = (tags: Tag[]) => tags.map((t) => `${t.key}=${t.value}`).join(' ');

export function buildJson(b: Build): unknown {
  return toJson(BuildSchema, b, { alwaysEmitImplicit: true });
}

export function agentJson(a: Agent): unknown {
  return toJson(AgentSchema, a, { alwaysEmitImplicit: true });
}

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

export function buildText(b: Build): string {
  const lines = [
    `build      ${b.id}`,
    `state      ${stateName(b.state)}`,
    `derivation ${b.derivationPath}`,
    `system     ${b.system}`,
    `priority   ${b.priority}${b.derivedPriority !== b.priority ? ` (derived ${b.derivedPriority})` : ''}`,
  ];
  if (b.waitReason) lines.push(`waiting    ${b.waitReason.text}`);
  else if (b.state === BuildState.SCHEDULED && b.waitingInputs > 0) lines.push(`waiting    for ${b.waitingInputs} input path(s) not in the cache yet`);
  if (b.notBefore && b.waitReason?.kind !== WaitKind.RETRY_BACKOFF) lines.push(`not before ${timestampDate(b.notBefore).toISOString()} (retry backoff)`);
  if (b.requiredFeatures.length) lines.push(`features   ${b.requiredFeatures.join(' ')} (required)`);
  if (b.failureReason) {
    const input = b.failedInput ? `: input ${b.failedInput}${b.failedInputBuildId ? ` (build ${b.failedInputBuildId} failed)` : ''}` : '';
    lines.push(`failed     ${b.failureReason}${input}`);
  }
  if (b.checkOfBuildId) lines.push(`check of   ${b.checkOfBuildId} (reproducibility check; its outputs are not served)`);
  if (b.successReason === 'cached') lines.push('succeeded  at submission: every output was in the cache already, nothing was built');
  else if (b.successReason) lines.push(`succeeded  ${b.successReason}`);
  if (b.timeoutSeconds) lines.push(`timeout    ${b.timeoutSeconds} s`);
  if (b.maxSilentSeconds) lines.push(`max silent ${b.maxSilentSeconds} s`);
  if (b.tags.length) lines.push(`tags       ${tagText(b.tags)}`);
  if (b.agentId) lines.push(`agent      ${b.agentId}`);
  for (const o of b.outputs) lines.push(`output     ${o.name} ${o.path}`);
  for (const i of b.inputDerivations) lines.push(`input      ${i}`);
  if (b.createdAt) lines.push(`created    ${timestampDate(b.createdAt).toISOString()}`);
  if (b.endedAt) lines.push(`ended      ${timestampDate(b.endedAt).toISOString()}`);
  for (const a of b.attempts) {
    const when = a.allocatedAt ? timestampDate(a.allocatedAt).toISOString() : '';
    const message = a.message ? `: ${a.message.trim().split('\n').slice(-1)[0]}` : '';
    lines.push(`attempt ${String(a.attempt).padEnd(2)} ${when} agent ${a.agentId} ${a.outcome || 'running'}${message}`);
  }
  return lines.join('\n');
}

export function buildLine(b: Build): string {
  return [b.id, stateName(b.state).padEnd(9), String(b.priority).padStart(4), b.derivationPath, tagText(b.tags)].join('  ').trimEnd();
}

export function agentLine(a: Agent): string {
  return [a.id, a.active ? 'active  ' : 'inactive', a.name || '-', tagText(a.tags)].join('  ').trimEnd();
}
