// Submitted .drv files go into the binary cache too, so that agents pull a build's
// derivation closure from the coordinator (`nix copy --derivation --from …`).
import { compressFrame } from 'lz4-napi';
import type { storePaths } from '../db/schema.js';
import { Hash } from '../store/hash.js';
import { narOfFile } from '../store/nar-file.js';
import { parseStorePath } from '../store/store-path.js';
import type { NarStorage } from '../storage/nar-storage.js';

export interface DerivationFile {
  path: string;
  text: string;
  /** What the .drv refers to: its input sources and input derivations. */
  references: string[];
}

/** Writes the .drv's NAR (LZ4) to storage; returns the row that records it. */
export async function storeDerivationNar(storage: NarStorage, drv: DerivationFile): Promise<typeof storePaths.$inferInsert> {
  const nar = narOfFile(Buffer.from(drv.text, 'utf8'));
  const file = await compressFrame(nar);
  const fileHash = Hash.of('sha256', file);
  const fileName = `${fileHash.base32}.nar.lz4`;
  await storage.put(fileName, file);
  return {
    path: drv.path,
    hashPart: parseStorePath(drv.path).hashPart,
    narHash: Hash.of('sha256', nar).toString(),
    narSize: nar.length,
    references: [...drv.references].sort(),
    deriver: '',
    fileName,
    compression: 'lz4',
    fileHash: fileHash.toString(),
    fileSize: file.length,
  };
}
