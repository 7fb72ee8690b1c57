// `kiln agent run`'s coordinators: every --coordinator, else $KILN_COORDINATOR, checked.
import { describe, expect, test } from '@jest/globals';
import { coordinatorUrls } from '../../../src/cli/commands/agent-run.js';
import { UsageError } from '../../../src/cli/usage-error.js';

describe('kiln agent run --coordinator', () => {
  test('takes every --coordinator given, once each, in order', () => {
    expect(coordinatorUrls(['http://a:8745', 'https://b:8745', 'http://a:8745'], {})).toEqual(['http://a:8745', 'https://b:8745']);
  });

  test('reads several from KILN_COORDINATOR separated by commas, else the default', () => {
    expect(coordinatorUrls(undefined, { KILN_COORDINATOR: 'http://a:1, http://b:2' })).toEqual(['http://a:1', 'http://b:2']);
    expect(coordinatorUrls(undefined, {})).toEqual(['http://127.0.0.1:8745']);
  });

  test('refuses what is not an http(s) URL, naming it', () => {
    expect(() => coordinatorUrls(['coordinator:8745x'], {})).toThrow(UsageError);
    expect(() => coordinatorUrls(['not a url'], {})).toThrow('--coordinator "not a url" is not a URL');
    expect(() => coordinatorUrls(['ftp://a'], {})).toThrow('only http and https URLs');
  });
});
