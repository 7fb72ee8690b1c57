// GET /dashboard/: the read-only dashboard, static files from the package's dashboard/
// folder (no build step: plain HTML, CSS and browser modules). The page reads
// everything through AdminService's Connect JSON endpoints with a bearer token, so the
// files themselves hold nothing secret. GET / leads there.
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HttpRoute } from './http-routes.js';

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'api.js': 'text/javascript; charset=utf-8',
  'dom.js': 'text/javascript; charset=utf-8',
  'overview.js': 'text/javascript; charset=utf-8',
  'build-page.js': 'text/javascript; charset=utf-8',
  'charts.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
};

/** dashboard/ sits at the package root, beside src/ and dist/ (as migrations/ does). */
export function dashboardFolder(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', '..', 'dashboard'), join(here, '..', '..', '..', 'dashboard')];
  return candidates.find((c) => existsSync(join(c, 'index.html'))) ?? candidates[0]!;
}

export function dashboardRoute(folder = dashboardFolder()): HttpRoute {
  return async (req, res) => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (path === '/' || path === '/dashboard') {
      res.writeHead(302, { location: '/dashboard/' });
      res.end();
      return true;
    }
    if (!path.startsWith('/dashboard/')) return false;
    const name = path.slice('/dashboard/'.length) || 'index.html';
    const type = FILES[name];
    if (!type || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    const body = await readFile(join(folder, name));
    res.writeHead(200, {
      'content-type': type,
      'cache-control': 'no-cache',
      // Only its own files and its own origin's API; no inline script, no framing.
      'content-security-policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
      'x-content-type-options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? '' : body);
    return true;
  };
}
