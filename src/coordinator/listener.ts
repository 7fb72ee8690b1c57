// One port for everything: gRPC needs HTTP/2, while Nix, curl and browsers speak
// HTTP/1.1 to the binary cache. Node's cleartext http2 server cannot fall back to
// HTTP/1.1 (allowHTTP1 works only with TLS, through ALPN), so without TLS we read the
// first bytes of each connection: the HTTP/2 client preface goes to the http2 server,
// anything else to an HTTP/1.1 server. Both share one request handler.
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import {
  createServer as createHttp2Server,
  createSecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';

export type RequestHandler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

export interface ListenOptions {
  host: string;
  port: number;
  tls?: { cert: Buffer; key: Buffer };
  /** HTTP/2 PING interval, so a dead peer behind NAT is noticed in seconds. */
  pingIntervalMs?: number;
  /** How long a connection may stay open before its first request (default IDLE_TIMEOUTS). */
  timeouts?: Partial<IdleTimeouts>;
}

/** Bounds on what a connection that sends nothing (or too slowly) may hold. */
export interface IdleTimeouts {
  /** A new connection's first bytes, and an HTTP/2 session's first request. */
  firstRequestMs: number;
  /** HTTP/1.1: a request's headers, and the whole request (the body of an upload included). */
  headersMs: number;
  requestMs: number;
}

export const IDLE_TIMEOUTS: IdleTimeouts = { firstRequestMs: 10_000, headersMs: 20_000, requestMs: 5 * 60_000 };

export interface Listener {
  address: AddressInfo;
  /** Stops accepting connections; open ones continue until `close` is called. */
  stopAccepting(): void;
  /** Closes every connection (HTTP/2 sessions get GOAWAY first). */
  close(): Promise<void>;
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/**
 * HTTP/2 receive windows. The defaults (64 KiB per stream and per connection) make an
 * upload stop and wait for a WINDOW_UPDATE every 64 KiB: the agent's next message is only
 * sent once the last one has left, so throughput was bounded by event-loop round trips,
 * not by the work. A window is also the most an agent can make the coordinator buffer
 * unread, so it is sized for a busy event loop (a few milliseconds at several hundred MB/s)
 * and no larger: one upload's stream, and all the streams of one connection together.
 */
const STREAM_WINDOW_BYTES = 8 << 20;
const CONNECTION_WINDOW_BYTES = 16 << 20;
/** DATA frames up to 1 MiB instead of 16 KiB: one read callback per chunk, not 64. */
const MAX_FRAME_BYTES = 1 << 20;

export async function listen(handler: RequestHandler, opts: ListenOptions): Promise<Listener> {
  const timeouts = { ...IDLE_TIMEOUTS, ...opts.timeouts };
  const sessions = new Set<Http2Session>();
  const sockets = new Set<Socket>();
  const http2Options = {
    settings: { enableConnectProtocol: false, initialWindowSize: STREAM_WINDOW_BYTES, maxFrameSize: MAX_FRAME_BYTES },
  };
  const h2 = opts.tls
    ? createSecureServer({ ...http2Options, cert: opts.tls.cert, key: opts.tls.key, allowHTTP1: true }, handler)
    : createHttp2Server(http2Options, handler);
  h2.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    // The connection's window is not a SETTINGS value: it is raised by a WINDOW_UPDATE.
    session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    if (opts.pingIntervalMs) keepAlive(session, opts.pingIntervalMs);
    // A session that opens no stream holds a socket for nothing.
    const idle = setTimeout(() => session.destroy(), timeouts.firstRequestMs).unref();
    session.once('stream', () => clearTimeout(idle));
    session.once('close', () => clearTimeout(idle));
  });
  // Without these time-outs a slow client could hold a socket forever.
  const h1 = createHttpServer(
    { keepAliveTimeout: 5_000, headersTimeout: timeouts.headersMs, requestTimeout: timeouts.requestMs, connectionsCheckingInterval: Math.min(30_000, timeouts.headersMs / 2) },
    handler,
  );
  // And a socket that goes silent mid-request (headersTimeout alone did not close one
  // handed over by the protocol sniffing below) is closed after the same time.
  h1.setTimeout(timeouts.headersMs);

  let front: Server;
  if (opts.tls) {
    front = h2 as unknown as Server;
  } else {
    front = createNetServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      route(socket);
    });
  }

  function route(socket: Socket): void {
    // Read in paused mode ('readable' + read()), never 'data': once a socket has been
    // flowing, bytes unshifted back into it do not reach the native HTTP/2 session.
    let seen = Buffer.alloc(0);
    // A connection that never says which protocol it speaks is closed.
    const silent = setTimeout(() => socket.destroy(), timeouts.firstRequestMs).unref();
    socket.once('close', () => clearTimeout(silent));
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2 && seen.length < PREFACE.length) return; // need more bytes to decide
      socket.off('readable', onReadable);
      clearTimeout(silent);
      socket.unshift(seen);
      (isH2 ? h2 : h1).emit('connection', socket);
    };
    socket.on('readable', onReadable);
    socket.on('error', () => socket.destroy());
  }

  if (opts.tls) {
    h2.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
  }

  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(opts.port, opts.host, () => {
      front.off('error', reject);
      resolve();
    });
  });

  return {
    address: front.address() as AddressInfo,
    stopAccepting() {
      front.close();
    },
    async close() {
      front.close();
      for (const session of sessions) session.close();
      h1.closeIdleConnections();
      // Give sessions a moment to say GOAWAY and finish; then cut what is left.
      await Promise.race([
        Promise.all([...sessions].map((s) => new Promise((r) => s.once('close', r)))),
        new Promise((r) => setTimeout(r, 2_000).unref()),
      ]);
      for (const session of sessions) session.destroy();
      h1.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** Pings the peer regularly; a session whose ping goes unanswered is destroyed. */
function keepAlive(session: Http2Session, intervalMs: number): void {
  const timer = setInterval(() => {
    if (session.destroyed || session.closed) return;
    const timeout = setTimeout(() => session.destroy(new Error('HTTP/2 ping timed out')), intervalMs).unref();
    try {
      session.ping((err) => {
        clearTimeout(timeout);
        if (err && !session.destroyed) session.destroy(err);
      });
    } catch {
      clearTimeout(timeout);
    }
  }, intervalMs).unref();
  session.once('close', () => clearInterval(timer));
}
