// What `kiln cache export` keeps in DIR/.kiln-export to be incremental and to survive an
// interruption: `state`, one line per exported path in hash-part order (its narinfo's
// version and NAR files), replaced whole at the end of a run; and `journal`, every file
// a run is about to create, so that the next run removes those an interrupted run left
// that no exported narinfo names. Streamed both ways: a million paths are never in memory.
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';

const HEADER = 'kiln-export-state 1';

export interface ExportedPath {
  hashPart: string;
  version: string;
  /** File names under nar/ its narinfo names. */
  nars: string[];
}

export class ExportStateError extends Error {
  override name = 'ExportStateError';
}

export function bookkeepingDir(dir: string): string {
  return join(dir, '.kiln-export');
}

const statePath = (dir: string) => join(bookkeepingDir(dir), 'state');
const journalPath = (dir: string) => join(bookkeepingDir(dir), 'journal');
/** Where files are written before they are renamed into place (the same file system as DIR). */
export const tempDir = (dir: string) => join(bookkeepingDir(dir), 'tmp');

function parseLine(line: string, file: string, n: number): ExportedPath {
  const m = /^([0-9a-z]{32}) ([0-9a-f]+) (\S*)$/.exec(line);
  if (!m) throw new ExportStateError(`${file} line ${n} is not "<hash part> <version> <nar files>": ${JSON.stringify(line.slice(0, 120))}; remove the directory .kiln-export to export everything again`);
  return { hashPart: m[1]!, version: m[2]!, nars: m[3] ? m[3].split(',') : [] };
}

/** The paths the last finished export wrote, in order; none for a directory never exported to. */
export async function* readState(dir: string): AsyncGenerator<ExportedPath> {
  const file = statePath(dir);
  const handle = await open(file, 'r').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
  if (!handle) return;
  const input = handle.createReadStream({ encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Infinity });
  let n = 0;
  let previous = '';
  for await (const line of lines) {
    n++;
    if (n === 1) {
      if (line !== HEADER) throw new ExportStateError(`${file} does not start with "${HEADER}"; remove the directory .kiln-export to export everything again`);
      continue;
    }
    const entry = parseLine(line, file, n);
    if (entry.hashPart <= previous) throw new ExportStateError(`${file} line ${n} is out of order; remove the directory .kiln-export to export everything again`);
    previous = entry.hashPart;
    yield entry;
  }
}

/** The next state, written beside the current one and put in its place by commit(). */
export class StateWriter {
  private constructor(
    private readonly dir: string,
    private readonly temp: string,
    private readonly out: WriteStream,
  ) {}

  static async create(dir: string): Promise<StateWriter> {
    const temp = join(tempDir(dir), `state-${process.pid}`);
    const out = createWriteStream(temp, { encoding: 'utf8' });
    await once(out, 'open');
    const w = new StateWriter(dir, temp, out);
    await w.line(HEADER);
    return w;
  }

  add(p: ExportedPath): Promise<void> {
    return this.line(`${p.hashPart} ${p.version} ${p.nars.join(',')}`);
  }

  private async line(text: string): Promise<void> {
    if (!this.out.write(`${text}\n`)) await once(this.out, 'drain');
  }

  /** Finishes the file (flushed to disk) and returns its path, for a last read before commit(). */
  async finish(): Promise<string> {
    await new Promise<void>((resolve, reject) => this.out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const handle = await open(this.temp, 'r');
    await handle.sync().finally(() => handle.close());
    return this.temp;
  }

  async commit(): Promise<void> {
    await rename(this.temp, statePath(this.dir));
  }

  async abandon(): Promise<void> {
    this.out.destroy();
    await rm(this.temp, { force: true });
  }
}

/** Reads a finished state file (StateWriter.finish's), for the sweep. */
export async function* readStateFile(file: string): AsyncGenerator<ExportedPath> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) if (++n > 1) yield parseLine(line, file, n);
}

export type JournalEntry = { kind: 'narinfo' | 'nar'; name: string };

/**
 * The files a run creates, each written down before it is: an interrupted run's files
 * are then known to the next one. Each line goes to the kernel before the file is made,
 * so a killed process loses none.
 */
export class Journal {
  private constructor(private readonly handle: FileHandle) {}

  static async open(dir: string): Promise<{ journal: Journal; left: JournalEntry[] }> {
    await mkdir(tempDir(dir), { recursive: true });
    const file = journalPath(dir);
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : Promise.reject(err)));
    const left: JournalEntry[] = [];
    for (const line of text.split('\n')) {
      // A last line cut short by a crash names nothing the run went on to create.
      const m = /^(narinfo|nar) (\S+)$/.exec(line);
      if (m) left.push({ kind: m[1] as JournalEntry['kind'], name: m[2]! });
    }
    return { journal: new Journal(await open(file, 'a')), left };
  }

  async note(entry: JournalEntry): Promise<void> {
    await this.handle.write(`${entry.kind} ${entry.name}\n`);
  }

  /** After the state is committed: what the journal named is either in it or removed. */
  async clear(): Promise<void> {
    await this.handle.truncate(0);
    await this.handle.close();
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

