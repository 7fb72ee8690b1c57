// An upstream binary cache made by hand: a Node HTTP server that answers each narinfo as
// a test sets it (signed, tampered, 500...), 404 for the rest, and can be stopped and
// started again on its port (an upstream that is down, then back).
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { encodeBase32 } from '../../src/store/base32.js';
import { renderNarInfo } from '../../src/store/narinfo.js';
import { signNarInfo, type NixSecretKey } from '../../src/store/nix-signature.js';
import { freePort } from './upstream-cache.js';

export type NarInfoAnswer = { status: number; body: string };

/** A narinfo for `path` signed by `key` (its NAR is not served). */
export function signedNarInfo(path: string, key: NixSecretKey): string {
  const narHash = `sha256:${encodeBase32(createHash('sha256').update(path).digest())}`;
  return renderNarInfo(signNarInfo({ storePath: path, files: [{ url: 'nar/x.nar', compression: 'none' }], narHash, narSize: 120, references: [], sigs: [], extra: [] }, key));
}

export interface NarInfoUpstream {
  url: string;
  /** What it answers, by hash part. */
  answers: Map<string, NarInfoAnswer>;
  /** How many narinfo requests it was sent. */
  requests(): number;
  listen(): Promise<void>;
  close(): Promise<void>;
  listening(): boolean;
}

export async function narInfoUpstream(): Promise<NarInfoUpstream> {
  const port = await freePort();
  const answers = new Map<string, NarInfoAnswer>();
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    const answer = answers.get(/^\/([0-9a-z]{32})\.narinfo$/.exec(req.url ?? '')?.[1] ?? '');
    res.writeHead(answer?.status ?? 404, { 'content-type': 'text/x-nix-narinfo' });
    res.end(answer?.body ?? '404');
  });
  const upstream: NarInfoUpstream = {
    url: `http://127.0.0.1:${port}`,
    answers,
    requests: () => requests,
    listen: () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    listening: () => server.listening,
  };
  await upstream.listen();
  return upstream;
}
