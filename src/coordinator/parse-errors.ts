// A request that is not a valid protobuf message is the caller's mistake: connect-node
// calls it INTERNAL ("parse binary: …"), which tells the caller to look for the fault on
// the server. Here it becomes INVALID_ARGUMENT: in the interceptor for streamed messages,
// and, for unary calls (decoded before any interceptor runs), in the handler's answer.
import { Code, ConnectError, type ConnectRouter } from '@connectrpc/connect';
import type { UniversalHandler, UniversalServerResponse } from '@connectrpc/connect/protocol';
import { codeToHttpStatus } from '@connectrpc/connect/protocol-connect';

const PARSE_BINARY = 'parse binary: ';

/** A connect decoding error as a refusal of the caller's bytes; undefined for any other error. */
export function parseRefusal(err: unknown): ConnectError | undefined {
  if (!(err instanceof ConnectError) || err.code !== Code.Internal || !err.rawMessage.startsWith(PARSE_BINARY)) return undefined;
  return new ConnectError(`the request is not a valid protobuf message: ${err.rawMessage.slice(PARSE_BINARY.length)}`, Code.InvalidArgument);
}

/** Wraps every unary handler of the router so that its decoding errors answer INVALID_ARGUMENT. */
export function refuseUnparsableRequests(router: ConnectRouter): void {
  router.handlers.forEach((handler, i) => {
    if (handler.method.methodKind !== 'unary') return;
    const wrapped = Object.assign(async (req: Parameters<UniversalHandler>[0]) => rewrite(await handler(req)), handler) as UniversalHandler;
    router.handlers[i] = wrapped;
  });
}

async function rewrite(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  // gRPC and gRPC-Web: the status is in the trailers, or in the headers of a trailers-only answer.
  for (const headers of [res.header, res.trailer]) {
    if (headers?.get('grpc-status') === String(Code.Internal)) {
      const message = decodeURIComponent(headers.get('grpc-message') ?? '');
      const refusal = parseRefusal(new ConnectError(message, Code.Internal));
      if (refusal) {
        headers.set('grpc-status', String(Code.InvalidArgument));
        headers.set('grpc-message', encodeURIComponent(refusal.rawMessage));
      }
    }
  }
  // Connect unary: an HTTP error status with a JSON body of a few hundred bytes.
  if (res.status === codeToHttpStatus(Code.Internal) && res.body && res.header?.get('content-type')?.startsWith('application/json')) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of res.body) chunks.push(chunk);
    const bytes = Buffer.concat(chunks);
    let body: Uint8Array = bytes;
    let status = res.status;
    try {
      const json = JSON.parse(bytes.toString('utf8')) as { code?: string; message?: string };
      const refusal = json.code === 'internal' ? parseRefusal(new ConnectError(json.message ?? '', Code.Internal)) : undefined;
      if (refusal) {
        status = codeToHttpStatus(Code.InvalidArgument);
        body = Buffer.from(JSON.stringify({ code: 'invalid_argument', message: refusal.rawMessage }));
        res.header.delete('content-length');
      }
    } catch {
      // not JSON after all: pass it on as it was
    }
    return { ...res, status, body: (async function* () { yield body; })() };
  }
  return res;
}
