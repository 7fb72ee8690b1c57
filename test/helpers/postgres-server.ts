// Starts a private PostgreSQL server for tests and benchmarks: initdb into a temp dir, a
// free port on loopback, run as user `postgres` when we are root (PostgreSQL refuses to
// run as root). Durability is off: the data is thrown away with the server.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';

export interface PostgresServer {
  /** Connection URL of the server's `postgres` database. */
  url: string;
  port: number;
  /** The postmaster's process id (its backends are its children). */
  pid: number;
  /** Stops the server as an outage would (fast shutdown), keeping its data for `resume`. */
  halt(): Promise<void>;
  /** Starts a halted server again, on the same port with the same data. */
  resume(): Promise<void>;
  stop(): Promise<void>;
}

function findBinDir(): string {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb')));
    versions.sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(base, versions[0], 'bin');
  }
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  const found = which.stdout.trim();
  if (which.status === 0 && found) return found.replace(/\/initdb$/, '');
  throw new Error('PostgreSQL is not installed: no initdb under /usr/lib/postgresql/*/bin or on PATH');
}

function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root but there is no `postgres` user to run PostgreSQL as');
  const fields = line.split(':');
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function waitForReady(child: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => done(new Error(`PostgreSQL did not start within ${timeoutMs} ms:\n${log}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('database system is ready to accept connections')) done();
    };
    const onExit = (code: number | null) => done(new Error(`PostgreSQL exited with ${code} before it was ready:\n${log}`));
    function done(err?: Error) {
      clearTimeout(timer);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      // Keep draining stderr so the server never blocks on a full pipe.
      child.stderr?.resume();
      if (err) reject(err);
      else resolve();
    }
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/**
 * `settings`: more server settings (`-c name=value`), e.g. shared_preload_libraries;
 * `logFile`: where the server's log goes (else it is read only until the server is ready).
 */
export async function startPostgres(opts: { settings?: Record<string, string>; logFile?: string } = {}): Promise<PostgresServer> {
  const bin = findBinDir();
  const user = postgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'kiln-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const dataDir = join(dir, 'data');
  const ids = user ? { uid: user.uid, gid: user.gid } : {};
  const init = spawnSync(join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], {
    encoding: 'utf8',
    ...ids,
  });
  if (init.status !== 0) throw new Error(`initdb failed (${init.status}): ${init.stderr}`);
  const port = await freePort();
  const launch = async () => {
    const child = spawn(
      join(bin, 'postgres'),
      ['-D', dataDir, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off',
        '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300',
        ...Object.entries(opts.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`])],
      { stdio: ['ignore', 'ignore', 'pipe'], ...ids },
    );
    if (opts.logFile) child.stderr!.pipe(createWriteStream(opts.logFile, { flags: 'a' }));
    await waitForReady(child, 30_000);
    return child;
  };
  const shutDown = async (child: ChildProcess) => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT'); // fast shutdown
      await exited;
    }
  };
  let child = await launch();
  // A benchmark or test run that dies must not leave its server behind.
  const killOnExit = () => child.kill('SIGINT');
  process.on('exit', killOnExit);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    get pid() {
      return child.pid!;
    },
    halt: () => shutDown(child),
    async resume() {
      child = await launch();
    },
    async stop() {
      process.off('exit', killOnExit);
      await shutDown(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The URL of database `name` on the server that `serverUrl` points into. */
export function databaseUrl(serverUrl: string, name: string): string {
  return serverUrl.replace(/\/[^/]*$/, `/${name}`);
}

/** Creates database `name` (a copy of `template` if given) and returns its URL. */
export async function createDatabase(serverUrl: string, name: string, template?: string): Promise<string> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}${template ? ` template ${template}` : ''}`);
  } finally {
    await admin.end();
  }
  return databaseUrl(serverUrl, name);
}

export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end();
  }
}
