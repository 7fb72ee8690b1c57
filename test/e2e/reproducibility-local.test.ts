// Reproducibility checks end to end with the local builder (the suite is in
// test/helpers/reproducibility-checks.ts): three agents, both databases.
import { reproducibilitySuite } from '../helpers/reproducibility-checks.js';

reproducibilitySuite('local');
