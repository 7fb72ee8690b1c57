// kiln's one domain error: what went wrong, in words a person can act on, and a kind
// that the API edge maps to a gRPC status (and the CLI to its exit message).
export type ErrorKind =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'permission_denied'
  | 'unauthenticated'
  | 'unavailable'
  /** Out of a resource the coordinator holds (disk space): try again once it is freed. */
  | 'resource_exhausted';

export class KilnError extends Error {
  override name = 'KilnError';
  constructor(
    readonly kind: ErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const invalidArgument = (message: string, cause?: unknown) => new KilnError('invalid_argument', message, { cause });
export const notFound = (message: string) => new KilnError('not_found', message);
