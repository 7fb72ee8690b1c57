// A TCP proxy in front of a server, for faults at a chosen moment: it counts the bytes
// clients send, can hold them back once a number has passed (an upload caught halfway),
// cut every connection, and refuse new ones until told otherwise.
import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  url: string;
  port: number;
  /** Client-to-server bytes forwarded so far. */
  forwarded(): number;
  /** Resolves once `bytes` more have been forwarded; from then on nothing more is (until `cut`). */
  holdAfter(bytes: number): Promise<void>;
  /** Ends every connection at once (both sides see a reset); `refuse` keeps new ones out too. */
  cut(opts?: { refuse?: boolean }): void;
  /** Takes connections again, forwarding everything. */
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host?: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let forwarded = 0;
  let refusing = false;
  let hold: { at: number; reached: () => void } | undefined;
  let held = false;
  const heldSockets: Socket[] = [];

  const server = createServer((client) => {
    if (refusing) return void client.resetAndDestroy();
    const upstream = connect({ host: target.host ?? '127.0.0.1', port: target.port });
    sockets.add(client).add(upstream);
    const drop = () => {
      sockets.delete(client);
      sockets.delete(upstream);
      if (!client.destroyed) client.resetAndDestroy();
      if (!upstream.destroyed) upstream.resetAndDestroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    upstream.pipe(client);
    client.on('data', (chunk: Buffer) => {
      if (held) {
        client.pause();
        heldSockets.push(client);
        return;
      }
      let data = chunk;
      if (hold && forwarded + data.length >= hold.at) {
        data = chunk.subarray(0, hold.at - forwarded);
        held = true;
        client.pause();
        heldSockets.push(client);
        const reached = hold.reached;
        hold = undefined;
        setImmediate(reached);
      }
      forwarded += data.length;
      if (data.length > 0) upstream.write(data);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    forwarded: () => forwarded,
    holdAfter(bytes) {
      return new Promise((reached) => (hold = { at: forwarded + bytes, reached }));
    },
    cut(opts = {}) {
      refusing = opts.refuse ?? false;
      for (const s of sockets) s.resetAndDestroy();
      sockets.clear();
      held = false;
      heldSockets.length = 0;
    },
    restore() {
      refusing = false;
      held = false;
      for (const s of heldSockets.splice(0)) s.resume();
    },
    async close() {
      for (const s of sockets) s.resetAndDestroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
