// A farm on top of a real Nix binary cache with the nix builder (test/helpers/upstream-farm.ts).
import { describe } from '@jest/globals';
import { upstreamFarmTests } from '../helpers/upstream-farm.js';

describe('a farm on a real Nix binary cache, nix builder', () => {
  upstreamFarmTests('nix');
});
