// A farm on top of a real Nix binary cache with the local builder: its own store fetches
// the lower half from the upstream (xz NARs, Nix signatures) (test/helpers/upstream-farm.ts).
import { describe } from '@jest/globals';
import { upstreamFarmTests } from '../helpers/upstream-farm.js';

describe('a farm on a real Nix binary cache, local builder', () => {
  upstreamFarmTests('local');
});
