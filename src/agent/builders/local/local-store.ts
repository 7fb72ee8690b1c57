// The store the local builder keeps: store paths as files under an optional root
// (ROOT + /nix/store/…), and a registry of the valid ones with their references, one
// small JSON file per path under ROOT + <store dir's parent>/var/kiln/valid. A path is
// valid once its registry entry exists: entries are written (atomically) only after
// the path is whole on disk, and removed before it is deleted.
import { lstat, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseStorePath, validateStoreDir } from '../../../store/store-path.js';
import { deleteTree } from './store-tree.js';

export interface PathInfo {
  path: string;
  /** `sha256:<base32>` of the path's NAR. */
  narHash: string;
  narSize: number;
  /** Full store paths, sorted; may include the path itself. */
  references: string[];
  /** The .drv that built it, when known. */
  deriver?: string;
}

export interface LocalStoreOptions {
  /** The store directory the derivations name, e.g. /nix/store. */
  storeDir: string;
  /** Where that directory's files are: under ROOT (ROOT/nix/store), or the directory itself. */
  root?: string;
}

export class LocalStore {
  readonly storeDir: string;
  /** The store directory on this machine's file system. */
  readonly diskStoreDir: string;
  private readonly validDir: string;
  /** One operation per path at a time (fetching, deleting, registering). */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(opts: LocalStoreOptions) {
    this.storeDir = validateStoreDir(opts.storeDir);
    // Absolute, since the builder is started in its build directory.
    const root = opts.root === undefined ? '' : resolve(opts.root);
    this.diskStoreDir = root + this.storeDir;
    this.validDir = join(root + dirname(this.storeDir), 'var', 'kiln', 'valid');
  }

  async init(): Promise<void> {
    await mkdir(this.diskStoreDir, { recursive: true });
    await mkdir(this.validDir, { recursive: true });
  }

  /** Where a store path's files are on this machine. */
  diskPath(storePath: string): string {
    return join(this.diskStoreDir, this.baseName(storePath));
  }

  private baseName(storePath: string): string {
    return parseStorePath(storePath, this.storeDir).baseName;
  }

  private entryPath(storePath: string): string {
    return join(this.validDir, `${parseStorePath(storePath, this.storeDir).hashPart}.json`);
  }

  /** The path's registry entry if it is valid; a stale entry (files gone) is dropped. */
  async query(storePath: string): Promise<PathInfo | undefined> {
    const text = await readFile(this.entryPath(storePath), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (text === undefined) return undefined;
    const info = JSON.parse(text) as PathInfo;
    if (info.path !== storePath) return undefined; // another name with the same hash part
    if (!(await lstat(this.diskPath(storePath)).catch(() => undefined))) {
      await rm(this.entryPath(storePath), { force: true });
      return undefined;
    }
    return info;
  }

  /** Records a path, whose files are in place, as valid. */
  async register(info: PathInfo): Promise<void> {
    const entry = this.entryPath(info.path);
    const temp = `${entry}.${process.pid}.tmp`;
    await writeFile(temp, JSON.stringify({ ...info, references: [...info.references].sort() }) + '\n');
    await rename(temp, entry);
  }

  /** Makes the path invalid and removes its files, if any. */
  async delete(storePath: string): Promise<void> {
    await rm(this.entryPath(storePath), { force: true });
    await deleteTree(this.diskPath(storePath));
  }

  /** A new empty directory inside the store directory, so that a rename from it is atomic. */
  tempDir(): Promise<string> {
    return mkdtemp(join(this.diskStoreDir, '.kiln-tmp-'));
  }

  /**
   * Moves a finished tree into place as `storePath`, replacing whatever invalid leftover
   * (an interrupted fetch or build) is there. The caller holds the path's lock.
   */
  async moveIntoPlace(from: string, storePath: string): Promise<void> {
    const target = this.diskPath(storePath);
    await deleteTree(target);
    await rename(from, target);
  }

  /** Runs `fn` while no other operation on `storePath` in this process runs. */
  exclusive<T>(storePath: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(storePath) ?? Promise.resolve();
    const result = previous.then(fn, fn);
    const settled = result.catch(() => undefined);
    this.locks.set(storePath, settled);
    void settled.then(() => {
      if (this.locks.get(storePath) === settled) this.locks.delete(storePath);
    });
    return result;
  }
}
