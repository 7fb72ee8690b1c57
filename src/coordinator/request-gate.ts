// The credential check at the HTTP edge, before connect-node's handler reads a byte of
// the body: connect runs interceptors only once a unary request's body has been read
// whole, so a caller without credentials could make the coordinator take in hundreds of
// MB first. A refused call is answered in its protocol's error form (gRPC and gRPC-Web:
// a trailers-only status; Connect: an error body) and its stream is closed unread.
import { constants as http2 } from 'node:http2';
import type { ConnectError } from '@connectrpc/connect';
import { createContextValues, type ContextValues } from '@connectrpc/connect';
import { encodeEnvelope } from '@connectrpc/connect/protocol';
import { codeToHttpStatus, endStreamFlag, endStreamToJson, errorToJson } from '@connectrpc/connect/protocol-connect';
import { setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { authenticatedAgent, type Authenticator } from './auth.js';
import type { Logger } from '../logger.js';
import { toConnectError } from './connect-errors.js';
import { specEncodeGrpcMessageIn } from './grpc-message.js';
import type { RequestHandler } from './listener.js';

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

const RPC_PATH = /^\/(kiln\.v1\.[A-Za-z]+)\/([A-Za-z]+)$/;

export interface RequestGate {
  /** The handler to listen with: checks credentials, then hands the request to `next`. */
  handler(next: RequestHandler): RequestHandler;
  /** For connectNodeAdapter's contextValues: who the gate let in. */
  contextValues(req: Request): ContextValues;
}

export function requestGate(auth: Authenticator, log: Logger): RequestGate {
  const agents = new WeakMap<Request, string>();
  return {
    handler: (next) => (req, res) => {
      const match = RPC_PATH.exec((req.url ?? '').split('?')[0]!);
      if (!match) return next(req, res);
      const header = (name: string) => {
        const v = req.headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
      auth
        .authenticate({ service: match[1]!, method: match[2]!, header, peer: req.socket?.remoteAddress ?? '' })
        .then((agentId) => {
          if (agentId !== undefined) agents.set(req, agentId);
          next(req, res);
        })
        .catch((err: unknown) => {
          // Not only refusals end here: the credential check reads the database, and a
          // database out of reach is UNAVAILABLE (agents retry), never a crash.
          const error = toConnectError(err, log, `${match[1]}.${match[2]} (credential check)`);
          try {
            refuse(req, res, error);
          } catch (failure) {
            log.error({ err: failure }, 'could not answer a refused call; its stream is reset');
            if ('stream' in req && req.httpVersionMajor === 2) req.stream.close(http2.NGHTTP2_INTERNAL_ERROR);
            else (res as ServerResponse).destroy();
          }
        });
    },
    contextValues(req) {
      const values = createContextValues();
      const agentId = agents.get(req);
      if (agentId !== undefined) values.set(authenticatedAgent, agentId);
      return values;
    },
  };
}

/** Answers a call with an error in its own protocol, without reading its body. */
function refuse(req: Request, res: Response, error: ConnectError): void {
  const contentType = String(req.headers['content-type'] ?? '');
  let status = 200;
  const headers: Record<string, string> = {};
  let body: Uint8Array | undefined;
  if (contentType.startsWith('application/grpc')) {
    // Trailers-only: the status travels in the headers, and the stream ends with them.
    headers['content-type'] = contentType;
    setTrailerStatus(new Headers(), error).forEach((value, key) => (headers[key] = value));
    // Written here on the HTTP/2 stream itself, past specGrpcMessages' reach.
    specEncodeGrpcMessageIn(headers);
  } else if (contentType.startsWith('application/connect+')) {
    headers['content-type'] = contentType;
    body = encodeEnvelope(endStreamFlag, new TextEncoder().encode(JSON.stringify(endStreamToJson(new Headers(), error, undefined))));
  } else {
    status = codeToHttpStatus(error.code);
    headers['content-type'] = 'application/json';
    body = new TextEncoder().encode(JSON.stringify(errorToJson(error, undefined)));
  }
  if ('stream' in req && req.httpVersionMajor === 2) {
    const stream = req.stream;
    if (stream.destroyed) return;
    stream.respond({ ':status': status, ...headers }, { endStream: body === undefined });
    if (body) stream.end(body);
    // The client may still be sending its body: stop it (RST_STREAM NO_ERROR, as gRPC servers do).
    if (body) stream.once('finish', () => stream.close(http2.NGHTTP2_NO_ERROR));
    else stream.close(http2.NGHTTP2_NO_ERROR);
    return;
  }
  const h1 = res as ServerResponse;
  h1.writeHead(status, { ...headers, connection: 'close' });
  h1.end(body, () => (req as IncomingMessage).socket.destroy());
}
