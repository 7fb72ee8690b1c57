// One `kiln cache export` at a time into a directory: a lock file holding the exporter's
// process id, taken over when that process is gone (killed mid-export).
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

export class ExportLocked extends Error {
  override name = 'ExportLocked';
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock in `dir`; resolves to its release. */
export async function takeExportLock(dir: string): Promise<() => Promise<void>> {
  const file = join(dir, 'lock');
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(file, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => rm(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
    }
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      throw new ExportLocked(`another kiln cache export (process ${pid}) is writing to ${dir}; wait for it, or remove ${file} if that process is not an export`);
    }
    // Its owner is gone: taken over (one attempt, so two takers cannot both win).
    await rm(file, { force: true });
  }
}
