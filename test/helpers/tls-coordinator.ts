// A coordinator with TLS on a self-signed certificate for 127.0.0.1 (made by openssl), and
// an in-memory database: for the clients' TLS tests of one describe block.
import { afterAll, beforeAll } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startCoordinator, type Coordinator } from '../../src/coordinator/coordinator.js';
import { silentLogger } from '../../src/logger.js';

/** Writes cert.pem and key.pem into `dir` and returns their paths. */
export async function selfSignedCert(dir: string): Promise<{ certFile: string; keyFile: string }> {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile]);
  return { certFile, keyFile };
}

export interface TlsCoordinator {
  coordinator: Coordinator;
  /** Its data directory, with the admin token in it. */
  dataDir: string;
  /** The certificate a client must trust. */
  certFile: string;
}

export function useTlsCoordinator(): () => TlsCoordinator {
  let dir: string | undefined;
  let started: TlsCoordinator | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-tls-'));
    const tls = await selfSignedCert(dir);
    const dataDir = join(dir, 'data');
    started = { coordinator: await startCoordinator({ port: 0, dataDir, database: { memory: true }, log: silentLogger(), tls }), dataDir, certFile: tls.certFile };
  }, 120_000);
  afterAll(async () => {
    await started?.coordinator.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (!started) throw new Error('the TLS coordinator is not started');
    return started;
  };
}
