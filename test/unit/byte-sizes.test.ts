// Sizes as operators write them (--max-output-size 2G, storage.maxLogSize "64MiB") and as
// messages print them; a mistake is an error naming the setting.
import { describe, expect, test } from '@jest/globals';
import { formatBytes, parseByteSize } from '../../src/byte-sizes.js';
import { storageOptions } from '../../src/cli/commands/coordinator.js';
import { UsageError } from '../../src/cli/usage-error.js';
import { checkConfig } from '../../src/coordinator/config-file.js';

describe('parseByteSize', () => {
  test('plain bytes and binary suffixes, in either case, with or without iB/B', () => {
    expect(parseByteSize('1048576', '--x')).toBe(1048576);
    expect(parseByteSize('0', '--x')).toBe(0);
    expect(parseByteSize('512K', '--x')).toBe(512 * 1024);
    expect(parseByteSize('64M', '--x')).toBe(64 * 2 ** 20);
    expect(parseByteSize('64m', '--x')).toBe(64 * 2 ** 20);
    expect(parseByteSize('64MB', '--x')).toBe(64 * 2 ** 20);
    expect(parseByteSize('2GiB', '--x')).toBe(2 * 2 ** 30);
    expect(parseByteSize(' 2 G ', '--x')).toBe(2 * 2 ** 30);
    expect(parseByteSize('1.5T', '--x')).toBe(1.5 * 2 ** 40);
    expect(parseByteSize('100B', '--x')).toBe(100);
  });

  test('anything else is a RangeError naming the setting and the text', () => {
    for (const bad of ['', 'big', '-1', '2X', '2 GiBs', '1e9', 'G']) {
      expect(() => parseByteSize(bad, '--max-output-size')).toThrow(
        new RangeError(`--max-output-size must be a size in bytes, e.g. 1048576, 512M or 2G; not ${JSON.stringify(bad)}`),
      );
    }
    expect(() => parseByteSize('99999999T', '--max-log-size')).toThrow('--max-log-size "99999999T" is too large');
  });
});

describe('formatBytes', () => {
  test('one decimal, none when it is whole', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(64 << 10)).toBe('64 KiB');
    expect(formatBytes(200_120)).toBe('195.4 KiB');
    expect(formatBytes(2 * 2 ** 30)).toBe('2 GiB');
  });
});

describe('the size flags and settings', () => {
  test('--max-output-size and --max-log-size become bytes; absent, the coordinator keeps its defaults', () => {
    expect(storageOptions({ 'max-output-size': '2G', 'max-log-size': '64M' })).toMatchObject({ maxOutputBytes: 2 * 2 ** 30, maxLogBytes: 64 * 2 ** 20 });
    const none = storageOptions({});
    expect(none.maxOutputBytes).toBeUndefined();
    expect(none.maxLogBytes).toBeUndefined();
  });

  test('a bad size is a usage error naming the flag', () => {
    expect(() => storageOptions({ 'max-log-size': 'lots' })).toThrow(UsageError);
    expect(() => storageOptions({ 'max-log-size': 'lots' })).toThrow('--max-log-size must be a size in bytes');
  });

  test('the configuration file takes bytes or a size, and names the setting when it is neither', () => {
    expect(checkConfig({ storage: { maxOutputSize: '512M', maxLogSize: 1024 } }, 'kiln.json').storage).toEqual({ maxOutputSize: '512M', maxLogSize: 1024 });
    expect(() => checkConfig({ storage: { maxOutputSize: 'huge' } }, 'kiln.json')).toThrow('storage.maxOutputSize');
    expect(() => checkConfig({ storage: { maxLogSize: -1 } }, 'kiln.json')).toThrow('storage.maxLogSize');
  });
});
