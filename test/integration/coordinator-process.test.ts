// The coordinator as its own process and listener: TLS when given a certificate, and an
// orderly stop on SIGTERM that leaves its embedded database whole.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import { startCoordinator, type Coordinator } from '../../src/coordinator/coordinator.js';
import { silentLogger } from '../../src/logger.js';
import { startCoordinatorProcess } from '../helpers/coordinator-process.js';
import { runCli } from '../helpers/coordinator.js';

describe('a coordinator with TLS', () => {
  let dir: string;
  let coordinator: Coordinator;
  let cert: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-tls-'));
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
    cert = readFileSync(join(dir, 'cert.pem'));
    coordinator = await startCoordinator({ port: 0, dataDir: dir, database: { memory: true }, log: silentLogger(),
      tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') } });
  });
  afterAll(async () => {
    await coordinator?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('serves gRPC over HTTP/2 and plain HTTP/1.1 on one TLS port', async () => {
    expect(coordinator.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const bearer: Interceptor = (next) => (req) => {
      req.header.set('authorization', `Bearer ${coordinator.adminToken}`);
      return next(req);
    };
    const admin = createClient(AdminService, createGrpcTransport({ baseUrl: coordinator.url, interceptors: [bearer], nodeOptions: { ca: cert } }));
    const { agent } = await admin.createAgent({ name: 'over-tls' });
    expect(agent!.name).toBe('over-tls');
    const body = await new Promise<string>((resolve, reject) => {
      get(`${coordinator.url}/nix-cache-info`, { ca: cert }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(`${res.httpVersion} ${res.statusCode} ${text}`));
      }).on('error', reject);
    });
    expect(body).toMatch(/^1\.1 200 StoreDir: \/nix\/store\n/);
  });
});

describe('the coordinator process', () => {
  test('stops in order on SIGTERM, and its embedded database opens again with what was stored', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'kiln-proc-'));
    const start = () => startCoordinatorProcess({ dataDir });
    try {
      const first = await start();
      const env = { KILN_COORDINATOR: first.url, KILN_DATA_DIR: dataDir };
      const created = await runCli(['agent', 'new', '--name', 'survives-restart'], env);
      expect(created.code).toBe(0);
      expect(await first.stop('SIGTERM')).toBe(0);
      expect(first.stderr()).toContain('SIGTERM, shutting down');

      const second = await start();
      const listed = await runCli(['agent', 'list'], { KILN_COORDINATOR: second.url, KILN_DATA_DIR: dataDir });
      expect(listed.stdout).toContain(created.stdout.trim());
      await second.stop();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});
