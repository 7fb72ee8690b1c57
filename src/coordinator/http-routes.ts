// Plain HTTP routes beside the RPC services: health now; the binary cache, /metrics and
// the dashboard hang here too.
import type { ConnectNodeAdapterOptions } from '@connectrpc/connect-node';

// connect-node's own request/response types (HTTP/1.1 or HTTP/2), which it does not export by name.
type NodeHandler = NonNullable<ConnectNodeAdapterOptions['fallback']>;
export type HttpRequest = Parameters<NodeHandler>[0];
export type HttpResponse = Parameters<NodeHandler>[1];
/** Answers the request and returns true, or returns false to let the next route try. */
export type HttpRoute = (req: HttpRequest, res: HttpResponse) => boolean | Promise<boolean>;

export function healthRoute(isReady: () => boolean): HttpRoute {
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/healthz') return false;
    const ready = isReady();
    res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end(ready ? 'ok\n' : 'shutting down\n');
    return true;
  };
}

/**
 * Tries each route in turn; 404 when none answers, 500 (logged by the caller) on a throw.
 * A route that answers without awaiting (the cache's narinfos from memory) is answered
 * in the same tick: no promise is made for it.
 */
export function chainRoutes(routes: HttpRoute[], onError: (err: unknown) => void) {
  const failed = (res: HttpResponse, err: unknown) => {
    onError(err);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
    res.end();
  };
  const from = async (req: HttpRequest, res: HttpResponse, at: number, pending: Promise<boolean>): Promise<void> => {
    if (await pending) return;
    for (let i = at + 1; i < routes.length; i++) if (await routes[i]!(req, res)) return;
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found\n');
  };
  return (req: HttpRequest, res: HttpResponse): void => {
    try {
      for (let i = 0; i < routes.length; i++) {
        const answered = routes[i]!(req, res);
        if (answered === true) return;
        if (answered !== false) {
          from(req, res, i, answered).catch((err: unknown) => failed(res, err));
          return;
        }
      }
    } catch (err) {
      failed(res, err);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found\n');
  };
}
