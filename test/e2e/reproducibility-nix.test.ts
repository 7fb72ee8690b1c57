// Reproducibility checks end to end with the nix builder (the suite is in
// test/helpers/reproducibility-checks.ts): three agents, each with its own chroot Nix
// store, both databases.
import { reproducibilitySuite } from '../helpers/reproducibility-checks.js';

reproducibilitySuite('nix');
