import { describe, expect, test } from '@jest/globals';
import { Hash } from '../../../src/store/hash.js';
import { outputProblems, type ExpectedOutput, type ReportedOutput } from '../../../src/scheduler/output-check.js';

const BUILD = '00000000-0000-4000-8000-000000000001';
const OTHER_BUILD = '00000000-0000-4000-8000-000000000002';
const OUT = '/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-x';
const DEV = '/nix/store/1c6kzph7l0dcbfmjap64f0czdafn3b7x-x-dev';
const HASH_A = Hash.of('sha256', 'a');
const HASH_B = Hash.of('sha256', 'b');

function expected(over: Partial<Record<'out' | 'dev', ExpectedOutput['stored'] | null>> = {}): ExpectedOutput[] {
  const stored = (name: 'out' | 'dev') => (over[name] === null ? undefined : (over[name] ?? { narHash: HASH_A.toString(), narSize: 100, buildId: BUILD }));
  return [
    { name: 'out', path: OUT, stored: stored('out') },
    { name: 'dev', path: DEV, stored: stored('dev') },
  ];
}

function reported(over: Partial<ReportedOutput> = {}): ReportedOutput[] {
  return [
    { name: 'out', path: OUT, narHash: HASH_A.toString(), narSize: 100, ...over },
    { name: 'dev', path: DEV, narHash: HASH_A.toString(), narSize: 100 },
  ];
}

describe('outputProblems', () => {
  test('finds nothing wrong when every output is stored as reported, whatever encoding the hash is in', () => {
    expect(outputProblems(BUILD, expected(), reported())).toEqual([]);
    expect(outputProblems(BUILD, expected(), reported({ narHash: `sha256:${HASH_A.hex}` }))).toEqual([]);
    expect(outputProblems(BUILD, expected(), reported({ narHash: HASH_A.sri }))).toEqual([]);
  });

  test('names an output that was not uploaded', () => {
    expect(outputProblems(BUILD, expected({ dev: null }), reported())).toEqual([`output dev (${DEV}) was not uploaded`]);
  });

  test('names an output the report leaves out, and one the derivation does not have', () => {
    const report = [reported()[0]!, { name: 'doc', path: DEV, narHash: HASH_A.toString(), narSize: 1 }];
    expect(outputProblems(BUILD, expected(), report)).toEqual([
      'the derivation has no output "doc", which the report names',
      `output dev (${DEV}) is not in the report`,
    ]);
  });

  test('names an output reported at another path', () => {
    expect(outputProblems(BUILD, expected(), reported({ path: DEV }))).toEqual([`output out (${OUT}) is reported as ${DEV}`]);
  });

  test('names an output whose hash or size differs from the stored NAR, with both, and who uploaded it', () => {
    expect(outputProblems(BUILD, expected(), reported({ narHash: HASH_B.toString() }))).toEqual([
      `output out (${OUT}) differs: the report says ${HASH_B}, 100 bytes; the cache holds ${HASH_A}, 100 bytes`,
    ]);
    expect(outputProblems(BUILD, expected({ out: { narHash: HASH_A.toString(), narSize: 100, buildId: OTHER_BUILD } }), reported({ narSize: 99 }))).toEqual([
      `output out (${OUT}) differs: the report says ${HASH_A}, 99 bytes; the cache holds ${HASH_A}, 100 bytes, uploaded by build ${OTHER_BUILD}`,
    ]);
  });

  test('a reported hash that does not parse matches nothing', () => {
    expect(outputProblems(BUILD, expected(), reported({ narHash: 'sha256:nonsense' }))).toHaveLength(1);
  });
});
