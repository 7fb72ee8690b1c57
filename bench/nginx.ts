// Debian's nginx with one worker, serving a directory as a static binary cache: the
// yardstick of the serving benchmark. Its configuration is what an operator would
// write for a file:// mirror (sendfile, keep-alive, no access log).
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../test/helpers/postgres-server.js';

export interface Nginx {
  url: string;
  stop(): Promise<void>;
}

export async function startNginx(root: string, dir: string): Promise<Nginx> {
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'nginx-error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  types { text/x-nix-narinfo narinfo; text/x-nix-cache-info nix-cache-info; application/x-nix-nar nar lz4 zst xz; }
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location ~ \\.narinfo$ { add_header Cache-Control "public, max-age=3600"; }
    location /nar/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
  }
}
`,
  );
  const child: ChildProcess = spawn('nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'nginx-error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  await new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`cannot run nginx (bash scripts/install-system-deps.sh installs it): ${err.message}`)));
    child.once('exit', (code) => reject(new Error(`nginx exited with ${code}: ${stderr}`)));
    const deadline = Date.now() + 10_000;
    const poll = () => {
      fetch(`http://127.0.0.1:${port}/nix-cache-info`).then(
        () => resolve(),
        () => (Date.now() > deadline ? reject(new Error(`nginx did not answer: ${stderr}`)) : setTimeout(poll, 50)),
      );
    };
    poll();
  });
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      process.off('exit', killOnExit);
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGQUIT');
      await exited;
    },
  };
}
