// The content addresses of fixed-output outputs, against what `nix path-info --json`
// (Nix 2.x) printed as "ca" for the same derivations: "echo hello > $out" with a flat
// and with a recursive sha256.
import { describe, expect, test } from '@jest/globals';
import { fixedOutputContentAddress } from '../../../src/store/content-address.js';

describe('fixed-output content addresses', () => {
  test('a flat sha256 is fixed:sha256:<nix32>, as Nix writes it', () => {
    expect(fixedOutputContentAddress('sha256', '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03')).toBe(
      'fixed:sha256:00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq',
    );
  });

  test('a recursive sha256 is fixed:r:sha256:<nix32>, as Nix writes it', () => {
    expect(fixedOutputContentAddress('r:sha256', '1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13')).toBe(
      'fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
    );
  });
});
