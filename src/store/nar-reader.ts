// Unpacks a NAR stream into a new directory tree, refusing (with NarError) anything that is
// not a canonical NAR, and never creating anything outside the target.
//
// Why nothing escapes the target: the parser refuses names that are empty, ".", ".." or hold
// "/" or NUL, so every path is the target plus plain names; a directory's entries come only
// after the directory itself, which this unpack created; and every creation is exclusive
// (mkdir, O_CREAT|O_EXCL|O_NOFOLLOW, symlink all fail on an existing name, even a symlink),
// so no symlink, ours or planted, is ever followed. The target itself must not exist yet.
import { constants } from 'node:fs';
import { mkdir, open, rm, symlink, type FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { NarResult } from './nar-format.js';
import { parseNar, type ByteSource } from './nar-parser.js';

export interface UnpackOptions {
  /** Stops the unpack; what was created is removed and the signal's reason thrown. */
  signal?: AbortSignal;
}

const CREATE_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const SLASH = Buffer.from('/');

/**
 * Unpacks the NAR in `source` at `target`, which must not exist (its parent must). Resolves
 * with the SHA-256 and size of the NAR once it is all written; on any failure, removes what
 * it created and rejects (NarError for a bad archive).
 */
export async function unpackNar(source: ByteSource, target: string, options: UnpackOptions = {}): Promise<NarResult> {
  const root = Buffer.from(resolve(target));
  const nar = parseNar(source);
  let created = false;
  let file: { handle: FileHandle; left: number } | undefined;
  try {
    for await (const event of nar) {
      options.signal?.throwIfAborted();
      const path = event.pathBytes.length === 0 ? root : Buffer.concat([root, SLASH, event.pathBytes]);
      switch (event.type) {
        case 'directory':
          await mkdir(path, 0o777);
          break;
        case 'regular': {
          const handle = await open(path, CREATE_FILE, 0o666);
          file = { handle, left: event.size };
          // As Nix restores: the umask's mode, plus execute for all if the NAR says executable.
          if (event.executable) await handle.chmod((await handle.stat()).mode | 0o111);
          if (file.left === 0) await closeFile();
          break;
        }
        case 'contents':
          await writeAll(file!.handle, event.chunk);
          file!.left -= event.chunk.length;
          if (file!.left === 0) await closeFile();
          break;
        case 'symlink':
          await symlink(event.targetBytes, path);
          break;
        case 'directory-end':
          break;
      }
      created = true;
    }
    return await nar.result;
  } catch (err) {
    await file?.handle.close().catch(() => {});
    // Only what this call created: if the target already existed, the first creation failed.
    if (created) await rm(root, { recursive: true, force: true });
    throw err;
  }

  async function closeFile(): Promise<void> {
    const handle = file!.handle;
    file = undefined;
    await handle.close();
  }
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  let done = 0;
  while (done < chunk.length) done += (await handle.write(chunk, done, chunk.length - done)).bytesWritten;
}
