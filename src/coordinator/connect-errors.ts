// The API edge's one translation of errors: kiln's domain errors become gRPC statuses
// with their message intact; the database out of reach is UNAVAILABLE (callers retry);
// anything else unexpected becomes INTERNAL and is logged.
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { isDatabaseUnavailable } from '../db/transient.js';
import { KilnError, type ErrorKind } from '../errors.js';
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

/** The status of an error kiln raised on purpose (a refusal); undefined for anything else. */
export function refusalError(err: unknown): ConnectError | undefined {
  if (err instanceof ConnectError) return parseRefusal(err) ?? err;
  if (err instanceof KilnError) return new ConnectError(err.message, CODES[err.kind]);
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
    try {
      return await next(req);
    } catch (err) {
      throw toConnectError(err, log, `${req.service.typeName}.${req.method.name}`);
    }
  };
}
