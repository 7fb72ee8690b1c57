// A build over the coordinator's size limits (max-output-size, max-log-size) fails with
// a result of its own, which the default retry policy does not retry: building it again
// makes the same output, or floods the same log. Either the coordinator refused the
// upload (OUT_OF_RANGE, its check is the authority) or the agent knew the limit from the
// Welcome and did not send what would be refused.
import { BuildResult } from '../../gen/kiln/v1/agent_pb.js';
import { tooLargeRefusal } from '../protocol/size-limits.js';

/** The agent's own finding that an output or log is over a limit it was told. */
export class OverSizeLimit extends Error {
  override name = 'OverSizeLimit';
  constructor(
    readonly what: 'output' | 'log',
    message: string,
  ) {
    super(message);
  }
}

/** The result and words to report when `err` says the build is over a size limit; undefined otherwise. */
export function tooLargeResult(err: unknown): { result: BuildResult; message: string } | undefined {
  const what = err instanceof OverSizeLimit ? err.what : tooLargeRefusal(err);
  if (what === undefined) return undefined;
  const message = err instanceof OverSizeLimit ? err.message : (err as { rawMessage: string }).rawMessage;
  return { result: what === 'output' ? BuildResult.OUTPUT_TOO_LARGE : BuildResult.LOG_TOO_LARGE, message };
}
