// Which refusals of the coordinator mean "not now" rather than "not this build": it is out
// of room (RESOURCE_EXHAUSTED: its disk is full, or below its floor of free space). The
// build is given back to be tried again later, not reported failed.
import { Code, ConnectError } from '@connectrpc/connect';

/** The coordinator's words when `err` (a call's error, or a report's refusal code) says "retry later"; undefined otherwise. */
export function retryLaterReason(err: unknown): string | undefined {
  if (err instanceof ConnectError && err.code === Code.ResourceExhausted) return err.rawMessage;
  return undefined;
}
