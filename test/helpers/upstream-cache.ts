// A real Nix binary cache as an upstream: a signing key from `nix-store
// --generate-binary-cache-key`, paths put in a directory by `nix copy --to file://DIR`
// (signed as they go), and the directory served by Python's http.server on a free port.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { nix, nixEnv } from './nix.js';
import { waitForHttp } from './wait.js';

export interface NixUpstream {
  dir: string;
  /** `name:base64`, for trusted-public-keys. */
  publicKey: string;
  url: string;
  /** Copies store paths (with their closures) from `fromStore` (default the machine's store) into the cache, signed. */
  push(paths: string[], fromStore?: string): void;
  /** Starts serving (again, after stop) on the same port. */
  serve(): Promise<void>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function nixUpstream(dir: string, keyName: string): Promise<NixUpstream> {
  const cacheDir = join(dir, 'cache');
  mkdirSync(cacheDir, { recursive: true });
  const secret = join(dir, 'key.sec');
  const pub = join(dir, 'key.pub');
  nix('nix-store', ['--generate-binary-cache-key', keyName, secret, pub]);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let server: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  return {
    dir: cacheDir,
    publicKey: readFileSync(pub, 'utf8').trim(),
    url,
    push(paths, fromStore) {
      nix('nix', ['copy', ...(fromStore ? ['--from', fromStore] : []), '--to', `file://${cacheDir}?secret-key=${secret}`, ...paths], {
        env: { ...nixEnv(), XDG_CACHE_HOME: join(dir, 'nix-cache') },
      });
    },
    async serve() {
      server = spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', cacheDir], { stdio: 'ignore' });
      exited = new Promise((resolve) => server!.once('exit', () => resolve()));
      // The directory listing answers 200 as soon as the server listens.
      await waitForHttp(`${url}/`, 20_000);
    },
    async stop() {
      if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGTERM');
      await exited;
    },
  };
}
