// The build loop end to end with the nix builder: two `kiln agent run` processes, each
// with its own chroot Nix store, build a DAG; an empty Nix store substitutes every output.
import { describe, test } from '@jest/globals';
import { buildDagAndSubstitute, useBuildFarm } from '../helpers/build-loop.js';

describe('the build loop with the nix builder', () => {
  const farm = useBuildFarm('nix');

  test('builds a DAG across two agents, and an empty store substitutes every output with signatures required', async () => {
    await buildDagAndSubstitute(farm());
  }, 300_000);
});
