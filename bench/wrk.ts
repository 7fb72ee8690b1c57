// Debian's `wrk` as the load generator of the serving benchmark: one thread, a fixed
// number of connections, URLs drawn at random from a list (a Lua script), and what it
// prints read back: requests and bytes a second, latency percentiles, errors.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface WrkRun {
  requestsPerSecond: number;
  bytesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Socket errors (connect, read, write, timeout) and responses other than 2xx/3xx. */
  socketErrors: number;
  non2xx: number;
}

export interface WrkOptions {
  url: string;
  /** Paths requested, each time one drawn at random. */
  paths: string[];
  connections: number;
  seconds: number;
  /** Where the Lua script is written. */
  dir: string;
}

const UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

function latencyMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!m) throw new Error(`unreadable wrk latency ${JSON.stringify(text)}`);
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

export function parseWrk(out: string): WrkRun {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const transfer = /Transfer\/sec:\s+([\d.]+)([KMG]?B)/.exec(out);
  const p50 = /^\s+50%\s+(\S+)/m.exec(out);
  const p99 = /^\s+99%\s+(\S+)/m.exec(out);
  if (!rps || !transfer || !p50 || !p99) throw new Error(`unreadable wrk output:\n${out}`);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requestsPerSecond: Number(rps[1]),
    bytesPerSecond: Number(transfer[1]) * UNITS[transfer[2]!]!,
    p50Ms: latencyMs(p50[1]!),
    p99Ms: latencyMs(p99[1]!),
    socketErrors: errors ? errors.slice(1).reduce((n, e) => n + Number(e), 0) : 0,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
  };
}

export async function runWrk(opts: WrkOptions): Promise<WrkRun> {
  const script = join(opts.dir, 'paths.lua');
  writeFileSync(
    script,
    `local paths = {${opts.paths.map((p) => JSON.stringify(p)).join(',')}}\n` +
      'local n = #paths\n' +
      'request = function() return wrk.format("GET", paths[math.random(n)]) end\n',
  );
  const args = ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--timeout', '10s', '--latency', '-s', script, opts.url];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (c: Buffer) => (text += c.toString()));
    child.stderr.on('data', (c: Buffer) => (text += c.toString()));
    child.once('error', (err) => reject(new Error(`cannot run wrk (bash scripts/install-system-deps.sh installs it): ${err.message}`)));
    child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}:\n${text}`))));
  });
  return parseWrk(out);
}
