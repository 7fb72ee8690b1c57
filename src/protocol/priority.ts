// The range of a build's priority, which the coordinator checks and the CLI checks first
// (so that a number out of int32's range never reaches the wire).

export const MIN_PRIORITY = -1_000_000;
export const MAX_PRIORITY = 1_000_000;
