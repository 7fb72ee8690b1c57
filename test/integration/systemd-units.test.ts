// The systemd units in contrib/systemd/ as systemd itself reads them: `systemd-analyze
// verify` (syntax, keys, the ExecStart command) and `systemd-analyze security` (the
// hardening holds). Not skipped without systemd: scripts/install-system-deps.sh installs it.
import { describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/coordinator.js';

const UNITS = ['kiln-coordinator.service', 'kiln-agent.service'];

function analyze(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile('systemd-analyze', args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new Error('systemd-analyze is missing: run scripts/install-system-deps.sh (Debian package systemd)'));
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/**
 * The units with ExecStart's /usr/bin/kiln pointed at an executable that exists here
 * (verify refuses a command it cannot find); every other line is checked as shipped.
 */
function unitsToCheck(): { dir: string; paths: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-units-'));
  const kiln = join(dir, 'kiln');
  writeFileSync(kiln, '#!/bin/sh\n');
  chmodSync(kiln, 0o755);
  const paths = UNITS.map((name) => {
    const text = readFileSync(join(REPO_ROOT, 'contrib', 'systemd', name), 'utf8');
    expect(text).toContain('ExecStart=/usr/bin/kiln ');
    writeFileSync(join(dir, name), text.replaceAll('/usr/bin/kiln', kiln));
    return join(dir, name);
  });
  return { dir, paths };
}

describe('systemd units', () => {
  test('systemd-analyze verify accepts them without a warning', async () => {
    const { dir, paths } = unitsToCheck();
    try {
      const result = await analyze(['verify', ...paths]);
      expect(result).toEqual({ code: 0, stdout: '', stderr: '' });
      // The check can fail: a key systemd does not know is reported.
      writeFileSync(paths[0]!, readFileSync(paths[0]!, 'utf8').replace('[Service]', '[Service]\nProtectEverything=yes'));
      expect((await analyze(['verify', paths[0]!])).stderr).toContain("Unknown key 'ProtectEverything'");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each(UNITS)('%s is hardened (offline exposure at most 3.0 of 10) with a state directory and an environment file', async (name) => {
    const { dir } = unitsToCheck();
    try {
      const result = await analyze(['security', '--offline=yes', '--threshold=30', join(dir, name)]);
      expect(result.code).toBe(0);
      const text = readFileSync(join(dir, name), 'utf8');
      expect(text).toMatch(/^StateDirectory=kiln/m);
      expect(text).toMatch(/^EnvironmentFile=-\/etc\/kiln\//m);
      expect(text).toMatch(/^DynamicUser=yes$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
