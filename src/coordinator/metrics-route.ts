// GET /metrics: the coordinator's metrics in Prometheus's text format, for scraping.
// Like the binary cache, it needs no token: it says how busy the farm is, nothing more.
import type { CoordinatorMetrics } from '../telemetry/metrics.js';
import type { HttpRoute } from './http-routes.js';

export function metricsRoute(metrics: CoordinatorMetrics): HttpRoute {
  return async (req, res) => {
    if ((req.url ?? '').split('?')[0] !== '/metrics') return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('GET /metrics\n');
      return true;
    }
    const { contentType, body } = await metrics.render();
    res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? '' : body);
    return true;
  };
}
