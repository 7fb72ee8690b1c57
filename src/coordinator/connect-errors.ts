// The API edge's one translation of errors: kiln's domain errors become gRPC statuses
// with their message intact; the database out of reach is UNAVAILABLE (callers retry);
// anything else unexpected becomes INTERNAL and is logged.
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { isDatabaseUnavailable } from '../db/transient.js';
import { KilnError, type ErrorKind } from '../errors.js';
import { BlobStoreError, type BlobErrorKind } from '../storage/blob-store.js';
import type { Logger } from '../logger.js';
import { parseRefusal } from './parse-errors.js';

const CODES: Record<ErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  permission_denied: Code.PermissionDenied,
  unauthenticated: Code.Unauthenticated,
  unavailable: Code.Unavailable,
  resource_exhausted: Code.ResourceExhausted,
};

/**
 * Storage's kinds: a store away or refusing as configured is for the caller to retry once
 * it is back (or fixed), as the message says.
 */
const BLOB_CODES: Record<BlobErrorKind, Code> = {
  not_found: Code.NotFound,
  unavailable: Code.Unavailable,
  out_of_space: Code.ResourceExhausted,
  misconfigured: Code.Unavailable,
  out_of_range: Code.OutOfRange,
  in_use: Code.Aborted,
};

/** The status of an error kiln raised on purpose (a refusal); undefined for anything else. */
export function refusalError(err: unknown): ConnectError | undefined {
  if (err instanceof ConnectError) return parseRefusal(err) ?? err;
  if (err instanceof KilnError) return new ConnectError(err.message, CODES[err.kind]);
  if (err instanceof BlobStoreError) return new ConnectError(`NAR storage: ${err.message}`, BLOB_CODES[err.kind]);
  return undefined;
}

export function toConnectError(err: unknown, log: Logger, method: string): ConnectError {
  const refusal = refusalError(err);
  if (refusal) return refusal;
  if (isDatabaseUnavailable(err)) {
    log.warn({ err: (err as Error).message, method }, 'the database is out of reach');
    return new ConnectError(`the coordinator's database is out of reach (${method}); try again later`, Code.Unavailable);
  }
  log.error({ err, method }, 'unexpected error in RPC handler');
  return new ConnectError(`internal error in ${method}; the coordinator's log has the details`, Code.Internal);
}

export function errorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const method = `${req.service.typeName}.${req.method.name}`;
    try {
      const res = await next(req);
      // A streamed answer fails while it is read: its errors are mapped there.
      if (!res.stream) return res;
      return { ...res, message: mapErrors(res.message, log, method) };
    } catch (err) {
      throw toConnectError(err, log, method);
    }
  };
}

async function* mapErrors<T>(messages: AsyncIterable<T>, log: Logger, method: string): AsyncGenerator<T> {
  try {
    yield* messages;
  } catch (err) {
    throw toConnectError(err, log, method);
  }
}
