// The bearer tokens: the admin token (every AdminService call) and the dashboard's
// read-only token, each given by the operator or generated at first start into the data
// directory (mode 0600) and read from there afterwards.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_TOKEN_FILE } from '../protocol/credentials.js';

export const DASHBOARD_TOKEN_FILE = 'dashboard-token';

export function loadOrCreateAdminToken(dataDir: string, given?: string): string {
  return loadOrCreateToken(dataDir, ADMIN_TOKEN_FILE, given);
}

/** The token that may only read (the dashboard's). */
export function loadOrCreateDashboardToken(dataDir: string, given?: string): string {
  return loadOrCreateToken(dataDir, DASHBOARD_TOKEN_FILE, given);
}

function loadOrCreateToken(dataDir: string, file: string, given?: string): string {
  if (given) return given;
  const path = join(dataDir, file);
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
