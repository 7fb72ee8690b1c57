// A real coordinator on a free port for integration tests, on the database kind asked
// for, with the three kinds of client the tests drive it through.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { startCoordinator, type Coordinator, type CoordinatorOptions } from '../../src/coordinator/coordinator.js';
import { createAdminClient, type AdminClient } from '../../sdk/typescript/src/index.js';
import { createLogger, silentLogger } from '../../src/logger.js';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from './databases.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const KILN_BIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

export interface TestCoordinator {
  coordinator: Coordinator;
  database: TestDatabase;
  dataDir: string;
  admin: AdminClient;
  stop(): Promise<void>;
}

export async function startTestCoordinator(
  kind: DatabaseKind,
  overrides: Partial<Pick<CoordinatorOptions, 'leaseMs' | 'narDir' | 'narStore' | 'narStoreCredentials' | 'narRedirectSeconds' | 'minFreeNarBytes' | 'maxOutputBytes' | 'maxLogBytes' | 'dispatchIntervalMs' | 'submitMissingInputs' | 'retryPolicy' | 'loadLimits' | 'defaultLimits' | 'allocationPolicy' | 'hooks' | 'hookPollMs' | 'hookLeaseMs' | 'compressions' | 'publish' | 'retention' | 'limits' | 'idleTimeouts' | 'loginThrottle' | 'upstreams' | 'upstreamLifetimes' | 'upstreamPollMs' | 'storeDir' | 'fodCheck' | 'fodCheckPollMs'>> = {},
): Promise<TestCoordinator> {
  const database = await createTestDatabase(kind);
  const dataDir = mkdtempSync(join(tmpdir(), 'kiln-coord-'));
  // KILN_TEST_LOG=1 shows the coordinator's log, for debugging a failing test.
  const log = process.env.KILN_TEST_LOG ? createLogger({ name: 'test-coordinator', level: 'debug' }) : silentLogger();
  const coordinator = await startCoordinator({ port: 0, dataDir, database: database.options, log, ...overrides });
  return {
    coordinator,
    database,
    dataDir,
    admin: createAdminClient(coordinator.url, coordinator.adminToken),
    async stop() {
      await coordinator.stop();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `kiln` CLI as a child process. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [KILN_BIN, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export function cliEnv(t: TestCoordinator): NodeJS.ProcessEnv {
  return { KILN_COORDINATOR: t.coordinator.url, KILN_ADMIN_TOKEN: t.coordinator.adminToken, KILN_DATA_DIR: t.dataDir };
}

/** An AdminService client from @grpc/grpc-js, built only from the .proto files. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type GrpcJsClient = grpc.Client & Record<string, any>;

export function grpcJsAdminClient(
  url: string,
  token: string,
): { client: GrpcJsClient; call<T>(method: string, request: object): Promise<T>; stream<T>(method: string, request: object): Promise<T[]> } {
  const definition = protoLoader.loadSync(join(REPO_ROOT, 'proto', 'kiln', 'v1', 'admin.proto'), {
    includeDirs: [join(REPO_ROOT, 'proto')],
    longs: String,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { kiln: { v1: { AdminService: grpc.ServiceClientConstructor } } };
  const client = new pkg.kiln.v1.AdminService(new URL(url).host, grpc.credentials.createInsecure()) as GrpcJsClient;
  const metadata = () => {
    const m = new grpc.Metadata();
    if (token) m.set('authorization', `Bearer ${token}`);
    return m;
  };
  function call<T>(method: string, request: object): Promise<T> {
    return new Promise((resolve, reject) => {
      client[method](request, metadata(), (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
    });
  }
  /** A server-streaming call: its messages, or its error. */
  function stream<T>(method: string, request: object): Promise<T[]> {
    return new Promise((resolve, reject) => {
      const messages: T[] = [];
      const call = client[method](request, metadata()) as grpc.ClientReadableStream<T>;
      call.on('data', (m: T) => messages.push(m));
      call.on('error', reject);
      call.on('end', () => resolve(messages));
    });
  }
  return { client, call, stream };
}
