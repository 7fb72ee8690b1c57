// Build states between the database's names and protobuf's enum, both ways.
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import type { BuildState as DbBuildState } from '../db/schema.js';
import { invalidArgument } from '../errors.js';

export const STATE_TO_PROTO: Record<DbBuildState, BuildState> = {
  scheduled: BuildState.SCHEDULED,
  allocated: BuildState.ALLOCATED,
  started: BuildState.STARTED,
  succeeded: BuildState.SUCCEEDED,
  failed: BuildState.FAILED,
  canceled: BuildState.CANCELED,
};

export function stateFromProto(state: BuildState): DbBuildState {
  const found = (Object.entries(STATE_TO_PROTO) as [DbBuildState, BuildState][]).find(([, p]) => p === state);
  if (!found) throw invalidArgument(`unknown build state ${state}`);
  return found[0];
}
