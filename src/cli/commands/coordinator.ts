// `kiln coordinator`: runs the coordinator until SIGINT or SIGTERM.
import { resolve } from 'node:path';
import { startCoordinator, DEFAULT_PORT } from '../../coordinator/coordinator.js';
import { defaultDataDir } from '../../config.js';
import { createLogger } from '../../logger.js';
import { startLocalAgent } from '../local-agent.js';
import { parse } from '../options.js';
import { UsageError } from '../usage-error.js';

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  if (!m) throw new UsageError(`--listen ${JSON.stringify(text)} is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`--listen port ${port} is above 65535`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export async function coordinatorCommand(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    listen: { type: 'string', default: `127.0.0.1:${DEFAULT_PORT}` },
    database: { type: 'string' },
    'data-dir': { type: 'string' },
    'nar-dir': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'local-agent': { type: 'boolean', default: false },
  });
  if (positionals.length) throw new UsageError(`kiln coordinator takes no arguments, got ${positionals.join(' ')}`);
  if (Boolean(values['tls-cert']) !== Boolean(values['tls-key'])) throw new UsageError('--tls-cert and --tls-key go together');
  const dataDir = resolve(values['data-dir'] ?? defaultDataDir());
  const databaseUrl = values.database ?? process.env.DATABASE_URL;
  const { host, port } = parseListen(values.listen);
  const coordinator = await startCoordinator({
    host,
    port,
    dataDir,
    narDir: values['nar-dir'] ? resolve(values['nar-dir']) : undefined,
    database: databaseUrl ? { url: databaseUrl } : { dataDir: resolve(dataDir, 'db') },
    adminToken: process.env.KILN_ADMIN_TOKEN || undefined,
    tls: values['tls-cert'] ? { certFile: values['tls-cert'], keyFile: values['tls-key']! } : undefined,
  });
  console.error(`kiln coordinator listening on ${coordinator.url} (data in ${dataDir}, database ${coordinator.database.kind})`);
  console.error(`cache public key: ${coordinator.nixPublicKey}`);
  const local = values['local-agent'] ? await startLocalAgent(coordinator, dataDir, createLogger({ name: 'kiln-agent' })) : undefined;
  if (local) console.error('local agent running (nix builder, this machine\'s store)');
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      console.error(`kiln coordinator: ${signal}, shutting down`);
      void (local?.shutdown() ?? Promise.resolve()).then(() => coordinator.stop()).then(done, done);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
