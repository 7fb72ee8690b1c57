// The admin bearer token: given by the operator, or generated at first start into the
// data directory (mode 0600) and read from there afterwards.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ADMIN_TOKEN_FILE = 'admin-token';

export function adminTokenPath(dataDir: string): string {
  return join(dataDir, ADMIN_TOKEN_FILE);
}

export function loadOrCreateAdminToken(dataDir: string, given?: string): string {
  if (given) return given;
  const path = adminTokenPath(dataDir);
  try {
    const existing = readFileSync(path, 'utf8').trim();
    if (existing) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  try {
    // 'wx' fails rather than overwrite a token another process just wrote; use theirs.
    writeFileSync(path, token + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(path, 'utf8').trim();
    throw err;
  }
  return token;
}
