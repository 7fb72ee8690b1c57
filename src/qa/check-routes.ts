// GET /qa/<build-id>/<position>/<output>.nar: a reproducibility check's result as the agent
// at that position made it, uncompressed, for examining an unreproducible output (e.g.
// `nix-store --restore`, diffoscope). Never a substitute: no narinfo names these files.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { HttpRoute } from '../coordinator/http-routes.js';
import type { Database } from '../db/connection.js';
import { checkResultFile } from '../scheduler/reproducibility.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { readResultNar } from './check-report.js';

const QA_NAR = /^\/qa\/([0-9a-f-]{36})\/(\d{1,3})\/([A-Za-z0-9+\-._?=]{1,211})\.nar$/;

export function checkRoutes(deps: { db: Database; storage: NarStorage }): HttpRoute {
  return async (req, res) => {
    const m = QA_NAR.exec((req.url ?? '').split('?')[0]!);
    if (!m) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('GET /qa/<build-id>/<position>/<output>.nar\n');
      return true;
    }
    const [, buildId, position, output] = m;
    const result = await checkResultFile(deps.db, buildId!, Number(position), output!);
    if (!result || (await deps.storage.size(result.fileName)) === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`no result ${position} of output ${output} of build ${buildId}'s reproducibility check\n`);
      return true;
    }
    // The stored file is compressed: its uncompressed length is the NAR's size.
    res.writeHead(200, { 'content-type': 'application/x-nix-archive', 'content-length': result.narSize, 'cache-control': 'no-store' });
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    const abort = new AbortController();
    res.once('close', () => abort.abort());
    await pipeline(Readable.from(readResultNar(deps.storage, result, abort.signal)), res).catch(() => res.destroy());
    return true;
  };
}
