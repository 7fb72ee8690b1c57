// Uploads the input sources of a submission that the coordinator's cache lacks (a
// builder script, a module tree: paths a derivation names in inputSrcs), each as the NAR
// of the local store path, in LZ4 frames as agents send outputs. A source goes after
// the paths it refers to, as the coordinator requires (and as `nix copy` orders them).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { SourceHeaderSchema, UploadSourceRequestSchema } from '../../gen/kiln/v1/admin_pb.js';
import { narUploadMessages, UPLOAD_CHUNK_BYTES } from '../agent/uploader.js';
import { parseDerivation } from '../store/derivation.js';
import { dumpPath } from '../store/nar-writer.js';
import type { AdminClient } from '../client/admin-client.js';
import type { DerivationFile } from './derivation-closure.js';

const run = promisify(execFile);

type SourceHeader = MessageInitShape<typeof SourceHeaderSchema>;

/** Uploads what the cache lacks of the closure's input sources; returns the paths uploaded. */
export async function uploadMissingSources(admin: AdminClient, closure: DerivationFile[]): Promise<string[]> {
  // Each source with one derivation that names it, which the coordinator checks.
  const neededBy = new Map<string, string>();
  for (const drv of closure) {
    for (const src of parseDerivation(Buffer.from(drv.text).toString('utf8')).inputSrcs) if (!neededBy.has(src)) neededBy.set(src, drv.path);
  }
  if (neededBy.size === 0) return [];
  const seen = new Set(neededBy.keys());
  const uploaded: string[] = [];
  // Depth first, each source after what it refers to; `via` is how the derivation reaches it.
  const visit = async (storePath: string, derivationPath: string, via: string[]): Promise<void> => {
    const references = await localReferences(storePath);
    const unseen = references.filter((r) => !seen.has(r));
    unseen.forEach((r) => seen.add(r));
    if (unseen.length > 0) {
      for (const ref of (await admin.queryMissingPaths({ paths: unseen })).missing) await visit(ref, derivationPath, [...via, storePath]);
    }
    await uploadSource(admin, { storePath, references, derivationPath, via });
    uploaded.push(storePath);
  };
  for (const path of (await admin.queryMissingPaths({ paths: [...neededBy.keys()] })).missing) await visit(path, neededBy.get(path)!, []);
  return uploaded;
}

async function uploadSource(admin: AdminClient, header: SourceHeader & { storePath: string }): Promise<void> {
  const nar = dumpPath(header.storePath, { chunkSize: UPLOAD_CHUNK_BYTES });
  async function* requests(): AsyncGenerator<MessageInitShape<typeof UploadSourceRequestSchema>> {
    for await (const message of narUploadMessages(header, nar)) yield { message };
  }
  try {
    await admin.uploadSource(requests());
  } catch (err) {
    throw new Error(`could not upload the input source ${header.storePath}: ${(err as Error).message}`, { cause: err });
  }
}

/** What a path in the local store refers to, as the local Nix (or Guix) records it. */
async function localReferences(path: string): Promise<string[]> {
  const tools: [string, string[]][] = [
    ['nix-store', ['--query', '--references', path]],
    ['guix', ['gc', '--references', path]],
  ];
  for (const [command, args] of tools) {
    try {
      const { stdout } = await run(command, args, { maxBuffer: 64 << 20 });
      return stdout.split('\n').filter((r) => r && r !== path).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new Error(`cannot read the references of ${path} from the local store: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`, {
        cause: err,
      });
    }
  }
  throw new Error(`cannot read the references of ${path}: neither nix-store nor guix is on PATH`);
}
