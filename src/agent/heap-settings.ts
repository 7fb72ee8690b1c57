// V8's heap settings for an agent's process. An upload allocates buffers for every frame
// it sends (LZ4's output, the frame, protobuf's and connect's copies: about 4 GB for a
// GiB of NAR) while its JavaScript heap stays small (~15 MB). V8 counts those buffers
// against a limit it grows only 1.1–4 times the heap that survived the last full
// collection, so it ran a full mark-compact every ~35 ms of upload, freeing the buffers
// and nothing else: about 200 per GiB, 2.5–3 CPU-s (measured with --trace-gc by
// `npm run bench -- --only upload`). Letting the limit grow further between collections
// cuts that to a few dozen; the agent's memory may float ~100 MB higher while it uploads.
// Not for the coordinator, whose memory during uploads is held to a bound.
import { setFlagsFromString } from 'node:v8';

/** The heap limit grows to (1 + this / 100) times what survived the last full collection. */
const HEAP_GROWING_PERCENT = 300;

/** Applies the agent's heap settings to this process (V8 reads this flag at every full collection). */
export function useAgentHeapSettings(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
