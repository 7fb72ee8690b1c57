// Input sources through AdminService over a socket: QueryMissingPaths, UploadSource
// (only sources a submitted derivation needs, hash and size checked, served signed),
// and readiness: a build is not allocated before its sources are in the cache.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { eq } from 'drizzle-orm';
import type { SourceHeaderSchema, UploadSourceRequestSchema } from '../../gen/kiln/v1/admin_pb.js';
import { narUploadMessages } from '../../src/agent/uploader.js';
import { storePaths } from '../../src/db/schema.js';
import { encodeBase32 } from '../../src/store/base32.js';
import { priorityFirst } from '../../src/scheduler/allocation.js';
import { NO_FEATURES } from '../../src/scheduler/placement.js';
import { dumpPath, hashPath } from '../../src/store/nar-writer.js';
import { parseNarInfo } from '../../src/store/narinfo.js';
import { countValidSignatures, parseNixPublicKey } from '../../src/store/nix-signature.js';
import { parseStorePath } from '../../src/store/store-path.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { chain, closureOf, sourcedDrv, SYSTEM } from '../helpers/derivations.js';

type SourceRequest = MessageInitShape<typeof UploadSourceRequestSchema>;
type Header = MessageInitShape<typeof SourceHeaderSchema>;

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    expect(err).toBeInstanceOf(ConnectError);
    return err as ConnectError;
  }
  throw new Error('the call was expected to be refused, but it succeeded');
}

describe.each(DATABASE_KINDS)('input sources through AdminService on %s', (kind) => {
  let t: TestCoordinator;
  let dir: string;
  const drvs = {} as Record<'sourced' | 'mismatch' | 'unsubmitted' | 'again', ReturnType<typeof sourcedDrv>>;
  let sourced: ReturnType<typeof sourcedDrv>;
  let unrelated: string;

  beforeAll(async () => {
    // nix-instantiate runs synchronously: before the coordinator serves.
    dir = mkdtempSync(join(tmpdir(), 'kiln-sources-'));
    for (const name of ['sourced', 'mismatch', 'unsubmitted', 'again'] as const) {
      drvs[name] = sourcedDrv(`${kind}-${name}-${Date.now()}`, mkdtempSync(join(dir, `${name}-`)));
    }
    sourced = drvs.sourced;
    unrelated = chain(`${kind}-sources-unrelated`).leaf;
    t = await startTestCoordinator(kind);
  });
  afterAll(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Uploads a local store path; `trailer` may replace the true hash and size. */
  function upload(header: Header, trailer?: { narHash: string; narSize: bigint }) {
    async function* requests(): AsyncGenerator<SourceRequest> {
      for await (const message of narUploadMessages(header, dumpPath(header.storePath!))) {
        yield { message: message.case === 'trailer' && trailer ? { case: 'trailer', value: trailer } : message };
      }
    }
    return t.admin.uploadSource(requests());
  }

  async function narinfo(path: string) {
    const res = await fetch(`${t.coordinator.url}/${parseStorePath(path).hashPart}.narinfo`);
    return { status: res.status, text: await res.text() };
  }

  const storedNars = () => readdirSync(join(t.dataDir, 'nars', 'nar')).sort();

  async function claimable(agentId: string): Promise<string[]> {
    const claimed = await priorityFirst.claim(t.coordinator.database.db, { agentId, systems: [SYSTEM], tags: [{ key: 'test', value: 'sources' }], features: NO_FEATURES }, 10, { leaseMs: 60_000 });
    return claimed.map((b) => b.id);
  }

  test('a build waits for its sources: QueryMissingPaths names them, UploadSource brings them, and they are served signed', async () => {
    const { agent } = await t.admin.createAgent({ name: 'sources' });
    const { build } = await t.admin.submitBuild({ derivationPath: sourced.drv, derivations: closureOf(sourced.drv), tags: [{ key: 'test', value: 'sources' }] });
    const asked = [sourced.wrapper, sourced.data, sourced.drv];
    expect((await t.admin.queryMissingPaths({ paths: asked })).missing).toEqual([sourced.wrapper, sourced.data]);
    expect(await claimable(agent!.id)).toEqual([]);

    // The wrapper is taken only after the script it refers to, which comes via the wrapper.
    const wrapperFirst = await refusal(upload({ storePath: sourced.wrapper, references: [sourced.script], derivationPath: sourced.drv }));
    expect(wrapperFirst.code).toBe(Code.FailedPrecondition);
    expect(wrapperFirst.rawMessage).toBe(`${sourced.wrapper} refers to paths the cache lacks: upload them first: ${sourced.script}`);
    const notVia = await refusal(upload({ storePath: sourced.script, references: [], derivationPath: sourced.drv }));
    expect(notVia.rawMessage).toBe(`${sourced.script} is not an input source of ${sourced.drv}; only sources a submitted derivation needs are taken`);
    await upload({ storePath: sourced.script, references: [], derivationPath: sourced.drv, via: [sourced.wrapper] });
    expect(await claimable(agent!.id)).toEqual([]);
    await upload({ storePath: sourced.wrapper, references: [sourced.script], derivationPath: sourced.drv });
    expect(await claimable(agent!.id)).toEqual([]);
    await upload({ storePath: sourced.data, references: [], derivationPath: sourced.drv });
    expect((await t.admin.queryMissingPaths({ paths: asked })).missing).toEqual([]);
    expect(await claimable(agent!.id)).toEqual([build!.id]);

    const key = parseNixPublicKey(t.coordinator.nixPublicKey);
    for (const [path, references] of [[sourced.wrapper, [sourced.script]], [sourced.data, []]] as const) {
      const info = await narinfo(path);
      expect(info.status).toBe(200);
      const parsed = parseNarInfo(info.text);
      expect(parsed.narHash).toBe(`sha256:${encodeBase32((await hashPath(path)).sha256)}`);
      expect(parsed.references).toEqual(references.map((r) => basename(r)));
      expect(parsed.deriver).toBeUndefined();
      expect(countValidSignatures(parsed, [key])).toBe(1);
    }
    const [row] = await t.coordinator.database.db.select().from(storePaths).where(eq(storePaths.path, sourced.data));
    expect(row!.buildId).toBeNull();
  });

  test('refuses a source whose declared hash does not match with INVALID_ARGUMENT, serving nothing', async () => {
    const { data, drv } = drvs.mismatch;
    await t.admin.submitBuild({ derivationPath: drv, derivations: closureOf(drv) });
    const before = storedNars();
    const true_ = await hashPath(data);
    const err = await refusal(upload({ storePath: data, references: [], derivationPath: drv }, { narHash: `sha256:${'0'.repeat(52)}`, narSize: BigInt(true_.size) }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain('is not the one declared');
    expect((await narinfo(data)).status).toBe(404);
    expect(storedNars()).toEqual(before);
    expect((await t.admin.queryMissingPaths({ paths: [data] })).missing).toEqual([data]);
  });

  test('refuses a path no submitted derivation needs, and sources of a derivation never submitted, with FAILED_PRECONDITION', async () => {
    const other = drvs.unsubmitted;
    // The unrelated derivation is submitted, but does not name this path.
    await t.admin.submitBuild({ derivationPath: unrelated, derivations: closureOf(unrelated) });
    const before = storedNars();
    const notNamed = await refusal(upload({ storePath: other.data, references: [], derivationPath: unrelated }));
    expect(notNamed.code).toBe(Code.FailedPrecondition);
    expect(notNamed.rawMessage).toBe(
      `${other.data} is not an input source of ${unrelated}; only sources a submitted derivation needs are taken`,
    );
    const unknown = await refusal(upload({ storePath: other.data, references: [], derivationPath: other.drv }));
    expect(unknown.code).toBe(Code.FailedPrecondition);
    expect(unknown.rawMessage).toBe(`derivation ${other.drv} is not known to the coordinator: submit it before uploading its sources`);
    expect((await narinfo(other.data)).status).toBe(404);
    expect(storedNars()).toEqual(before);
  });

  test('uploading a source the cache holds already is harmless: the same NAR stays served', async () => {
    const again = drvs.again;
    await t.admin.submitBuild({ derivationPath: again.drv, derivations: closureOf(again.drv) });
    const first = await upload({ storePath: again.data, references: [], derivationPath: again.drv });
    const info = await narinfo(again.data);
    const second = await upload({ storePath: again.data, references: [], derivationPath: again.drv });
    expect({ fileHash: second.fileHash, fileSize: second.fileSize }).toEqual({ fileHash: first.fileHash, fileSize: first.fileSize });
    expect(await narinfo(again.data)).toEqual(info);
    const rows = await t.coordinator.database.db.select().from(storePaths).where(eq(storePaths.path, again.data));
    expect(rows).toHaveLength(1);
  });
});
