// The scheduling benchmark's workload: a derivation graph shaped like a distribution's
// (Guix, Nixpkgs). A bootstrap chain, then a few hundred core packages (compilers, libc,
// coreutils…) that most of the rest depend on, then the packages: most take 1–10
// inputs, drawn from the core (a few hubs very often) and from earlier packages (so
// chains grow long), a few are multi-output, a few aggregates (tests, channels) take
// hundreds of inputs. Seeded, so the same on every run and machine.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeDerivation } from '../src/store/make-derivation.js';
import type { Derivation } from '../src/store/derivation.js';
import { mulberry32 } from './cached-tree.js';

export const DAG_SYSTEMS = ['x86_64-linux', 'i686-linux'] as const;

export interface DagNode {
  path: string;
  text: string;
  system: string;
  priority: number;
  /** The nodes whose outputs this one uses (all earlier: the list is in topological order), and which outputs. */
  inputs: { index: number; outputs: string[] }[];
  outputs: { name: string; path: string }[];
}

export interface DagShape {
  nodes: DagNode[];
  /** Longest chain of builds (nodes on it). */
  depth: number;
  edges: number;
  /** Share of nodes with at most 10 inputs. */
  upToTenInputs: number;
  /** The most dependents any one node has. */
  maxDependents: number;
}

const BOOTSTRAP = 40;
/** Bump when the shape changes, so that a cached graph of the old shape is not reused. */
const SHAPE_VERSION = 1;

/** The graph of `count` nodes, made once (it takes a while) and kept under `dataDir`. */
export function loadDag(dataDir: string, count: number, seed = 6): DagShape {
  const file = join(dataDir, `schedule-dag-v${SHAPE_VERSION}-${count}-${seed}.json`);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as DagShape;
  const dag = makeDag(count, seed);
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(dag));
  renameSync(`${file}.tmp`, file);
  return dag;
}

export function makeDag(count: number, seed = 6): DagShape {
  const random = mulberry32(seed);
  const pick = (n: number) => Math.floor(random() * n);
  const core = Math.min(Math.max(BOOTSTRAP + 10, Math.round(count * 0.003)), 400, count);
  const known = new Map<string, Derivation>();
  const nodes: DagNode[] = [];
  const run = `b${seed}`;

  const add = (name: string, inputIndices: number[], outputs: string[], system: string, priority: number) => {
    // Most users take `out`; of a multi-output input, often its `dev` (headers) too.
    const inputs = inputIndices.map((index) => {
      const input = nodes[index]!;
      const hasDev = input.outputs.some((o) => o.name === 'dev');
      return { index, outputs: hasDev && random() < 0.5 ? ['dev', 'out'] : ['out'] };
    });
    const inputDrvs = new Map(inputs.map((i) => [nodes[i.index]!.path, i.outputs]));
    const made = makeDerivation(
      {
        name: `${name}-${run}`,
        system,
        builder: '/bin/sh',
        args: ['-e', '/nix/store/00000000000000000000000000000000-default-builder.sh'],
        env: { pname: name, version: `${1 + pick(9)}.${pick(20)}`, strictDeps: '1' },
        outputs,
        inputDrvs,
      },
      '/nix/store',
      known,
    );
    known.set(made.path, made.drv);
    nodes.push({
      path: made.path,
      text: made.text,
      system,
      priority,
      inputs,
      outputs: [...made.outputs].map(([n, path]) => ({ name: n, path })),
    });
  };

  // The bootstrap: a chain, each stage built with the one before (and sometimes an older one).
  for (let i = 0; i < Math.min(BOOTSTRAP, count); i++) {
    add(`bootstrap-stage${i}`, i === 0 ? [] : [...new Set([i - 1, ...(i > 3 && random() < 0.3 ? [pick(i - 1)] : [])])], ['out'], DAG_SYSTEMS[0], 0);
  }
  // The core: each on the end of the bootstrap and a few other core packages.
  for (let i = BOOTSTRAP; i < core; i++) {
    const inputs = new Set([BOOTSTRAP - 1]);
    if (i > BOOTSTRAP) for (let k = 1 + pick(4); k > 0; k--) inputs.add(BOOTSTRAP + pick(i - BOOTSTRAP));
    add(`core${i}`, [...inputs], random() < 0.4 ? ['out', 'dev'] : ['out'], DAG_SYSTEMS[0], 0);
  }
  // The packages.
  for (let i = core; i < count; i++) {
    const aggregate = i % 5000 === 4999;
    const want = aggregate ? 100 + pick(200) : inputCount(random);
    const inputs = new Set<number>();
    // Hubs (the stdenv's pieces) first: zipf-like over the core, so a few have most dependents.
    if (!aggregate) inputs.add(core - 1 - Math.floor((core - BOOTSTRAP) * random() ** 3));
    while (inputs.size < Math.min(want, i)) {
      const r = random();
      if (r < 0.35) inputs.add(BOOTSTRAP + Math.floor((core - BOOTSTRAP) * random() ** 2));
      else if (r < 0.65) inputs.add(Math.max(core, i - 1 - Math.floor(-Math.log(1 - random()) * 200))); // recent: chains
      else inputs.add(core + pick(Math.max(1, i - core))); // any earlier package: popular libraries
    }
    inputs.delete(i);
    const outputs = random() < 0.12 ? (random() < 0.25 ? ['out', 'dev', 'doc'] : ['out', 'dev']) : ['out'];
    const system = random() < 0.1 ? DAG_SYSTEMS[1] : DAG_SYSTEMS[0];
    // Most builds at the default priority; a few asked for sooner.
    const priority = random() < 0.01 ? 10 * (1 + pick(10)) : 0;
    add(`${aggregate ? 'tests' : 'pkg'}${i}`, [...inputs], outputs, system, priority);
  }
  return { nodes, ...shapeOf(nodes) };
}

/** 1–10 inputs, small counts most often (median 3), as in a distribution's packages. */
function inputCount(random: () => number): number {
  return Math.min(10, 1 + Math.floor(-Math.log(1 - random()) * 2.2));
}

function shapeOf(nodes: DagNode[]): Omit<DagShape, 'nodes'> {
  const depthOf: number[] = [];
  const dependents = new Array<number>(nodes.length).fill(0);
  let edges = 0;
  let small = 0;
  nodes.forEach((n, i) => {
    depthOf[i] = 1 + n.inputs.reduce((d, j) => Math.max(d, depthOf[j.index]!), 0);
    for (const j of n.inputs) dependents[j.index]!++;
    edges += n.inputs.length;
    if (n.inputs.length <= 10) small++;
  });
  return {
    depth: depthOf.reduce((a, b) => Math.max(a, b), 0),
    edges,
    upToTenInputs: nodes.length ? small / nodes.length : 0,
    maxDependents: dependents.reduce((a, b) => Math.max(a, b), 0),
  };
}
