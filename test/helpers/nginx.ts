// A real nginx (Debian's) on a free port, for tests of kiln behind it and of what kiln
// writes for static serving: the master in the foreground, its pid, logs and temporary files in a
// directory of its own, and workers as root (tests run as root, and temporary
// directories are private to their owner).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './postgres-server.js';
import { waitForHttp } from './wait.js';

// Debian's is in /usr/sbin, which a non-root PATH lacks.
const NGINX = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

export interface Nginx {
  url: string;
  /** The access log so far, one line per request. */
  accessLog(): string;
  stop(): Promise<void>;
}

/**
 * nginx with the http-level configuration `config` gives (server blocks listening on
 * 127.0.0.1:port, as an operator's conf.d file holds them; `dir` is theirs for cache
 * directories), after what Debian's nginx.conf sets (the MIME types); `probe` is a path
 * that answers 200 once it listens.
 */
export async function startNginx(config: (at: { port: number; dir: string }) => string, probe: string): Promise<Nginx> {
  const prefix = mkdtempSync(join(tmpdir(), 'kiln-nginx-'));
  const port = await freePort();
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process on;
worker_processes 1;
${process.getuid?.() === 0 ? 'user root;' : ''}
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 64; }
http {
  access_log ${prefix}/access.log;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
${config({ port, dir: prefix })}
}
`,
  );
  const child: ChildProcess = spawn(NGINX, ['-p', prefix, '-e', `${prefix}/error.log`, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await Promise.race([
      waitForHttp(`${url}/${probe}`, 15_000),
      exited.then(() => Promise.reject(new Error(`nginx exited at start: ${stderr}${readLog(join(prefix, 'error.log'))}`))),
    ]);
  } catch (err) {
    child.kill('SIGKILL');
    rmSync(prefix, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    accessLog: () => readLog(join(prefix, 'access.log')),
    async stop() {
      // SIGQUIT: nginx's graceful stop, the workers with it.
      child.kill('SIGQUIT');
      await exited;
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
