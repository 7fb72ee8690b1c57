// A private Ceph object gateway (Debian's radosgw) for tests: one monitor, one OSD on
// memstore (RAM, no disk to prepare), no authentication inside the cluster, and the S3
// gateway on a free port with one user. It comes up in about 15 s; stop() ends the three
// daemons and removes the directory. halt()/resume() stop and restart the gateway alone,
// so that a test sees the store go away and come back.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './postgres-server.ts';
import { waitForHttp } from './wait.js';

const run = promisify(execFile);

export interface Radosgw {
  /** The S3 endpoint, http://127.0.0.1:PORT */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Stops the gateway (the cluster behind it stays). */
  halt(): Promise<void>;
  /** Starts the gateway again after halt(). */
  resume(): Promise<void>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;

export async function startRadosgw(): Promise<Radosgw> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-rgw-'));
  for (const sub of ['mon', 'osd0', 'run', 'log', 'rgw']) mkdirSync(join(dir, sub));
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const fsid = randomUUID();
  const conf = join(dir, 'ceph.conf');
  writeFileSync(
    conf,
    `[global]
fsid = ${fsid}
mon host = v1:127.0.0.1:${monPort}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr2 = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
osd objectstore = memstore
memstore device bytes = 1073741824
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
log file = ${dir}/log/$name.log
mon cluster log file = ${dir}/log/cluster.log
mon data = ${dir}/mon
osd data = ${dir}/osd$id
keyring = ${dir}/keyring
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
`,
  );
  const children: ChildProcess[] = [];
  const daemon = (cmd: string, args: string[]) => {
    const child = spawn(cmd, ['-f', '-c', conf, ...args], { stdio: 'ignore' });
    children.push(child);
    return child;
  };
  const killAll = () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
  process.on('exit', killAll);
  const logTail = () => {
    try {
      return readFileSync(join(dir, 'log', 'client.rgw.log'), 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '(no gateway log)';
    }
  };
  const ceph = (cmd: string, args: string[]) => run(cmd, ['-c', conf, ...args], { timeout: START_TIMEOUT_MS });
  let gateway: ChildProcess | undefined;
  const startGateway = async () => {
    gateway = daemon('radosgw', ['-n', 'client.rgw']);
    await waitForHttp(`http://127.0.0.1:${rgwPort}/`, START_TIMEOUT_MS).catch((err: Error) => {
      throw new Error(`radosgw did not answer: ${err.message}\n${logTail()}`);
    });
  };
  const accessKeyId = 'KILNTESTKEY';
  const secretAccessKey = 'kiln-test-secret';
  try {
    await ceph('ceph-authtool', ['--create-keyring', join(dir, 'keyring'), '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
    await run('monmaptool', ['--create', '--addv', 'a', `[v1:127.0.0.1:${monPort}]`, '--fsid', fsid, join(dir, 'monmap')]);
    await ceph('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap')]);
    daemon('ceph-mon', ['-i', 'a']);
    const osdUuid = randomUUID();
    const { stdout: id } = await ceph('ceph', ['--connect-timeout', '30', 'osd', 'new', osdUuid]);
    await ceph('ceph-osd', ['-i', id.trim(), '--mkfs', '--osd-uuid', osdUuid]);
    daemon('ceph-osd', ['-i', id.trim()]);
    await startGateway();
    await ceph('radosgw-admin', ['user', 'create', '--uid', 'kiln', '--display-name', 'kiln tests', '--access-key', accessKeyId, '--secret-key', secretAccessKey]);
  } catch (err) {
    killAll();
    process.off('exit', killAll);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const stopChild = async (child: ChildProcess | undefined) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  return {
    endpoint: `http://127.0.0.1:${rgwPort}`,
    accessKeyId,
    secretAccessKey,
    halt: () => stopChild(gateway),
    resume: startGateway,
    async stop() {
      process.off('exit', killAll);
      for (const child of children.reverse()) await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
