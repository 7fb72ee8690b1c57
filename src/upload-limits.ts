// Limits of the NAR upload protocol that the agent and the coordinator both keep.

/**
 * The most NAR bytes an output may carry inside its BuildFinished (OutputInfo.nar_lz4,
 * one LZ4 frame) instead of being uploaded by its own UploadOutput call.
 */
export const INLINE_NAR_MAX = 64 << 10;
