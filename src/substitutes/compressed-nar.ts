// Makes a stored path's NAR in another compression from its uploaded LZ4 file: read,
// decompressed, compressed again and written to a temporary file as one stream, with the
// NAR's hash checked on the way (a damaged file is not published again under a new
// name) and the new file's hash and size counted for its narinfo block.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { encodeBase32 } from '../store/base32.js';
import { Hash } from '../store/hash.js';
import { decompressLz4Frames } from '../store/lz4-frames.js';
import { parseStorePath } from '../store/store-path.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { compress, extensionOf, type Compression } from './compressions.js';
import type { StoredFile } from './narinfo-text.js';

export interface UploadedNar {
  path: string;
  fileName: string;
  narHash: string;
  narSize: number;
}

/** The new file, written at `temporary` (for NarStorage.adopt), and what its narinfo block says. */
export interface CompressedNar {
  temporary: string;
  file: StoredFile;
}

export async function makeCompressedNar(storage: NarStorage, stored: UploadedNar, compression: Compression, signal: AbortSignal): Promise<CompressedNar> {
  const narHash = createHash('sha256');
  let narSize = 0;
  async function* nar(): AsyncGenerator<Buffer> {
    for await (const chunk of decompressLz4Frames(storage.read(stored.fileName))) {
      narHash.update(chunk);
      narSize += chunk.length;
      yield chunk;
    }
  }
  const fileHash = createHash('sha256');
  let fileSize = 0;
  async function* counted(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      fileHash.update(chunk);
      fileSize += chunk.length;
      yield chunk;
    }
  }
  const temporary = storage.temporaryPath(`${compression.name}-${parseStorePath(stored.path).hashPart}`);
  try {
    await pipeline(compress(compression, nar(), signal), counted, createWriteStream(temporary), { signal });
    const found = new Hash('sha256', narHash.digest());
    if (narSize !== stored.narSize || !found.equals(Hash.parse(stored.narHash))) {
      throw new Error(
        `the stored NAR of ${stored.path} (${stored.fileName}) is damaged: it holds ${narSize} bytes hashing to ${found}, not the ${stored.narSize} bytes and ${stored.narHash} recorded`,
      );
    }
  } catch (err) {
    await rm(temporary, { force: true });
    throw err;
  }
  const hash = encodeBase32(fileHash.digest());
  return {
    temporary,
    file: { fileName: `${hash}.nar.${extensionOf(compression.name)}`, compression: compression.name, fileHash: `sha256:${hash}`, fileSize },
  };
}
