// `kiln coordinator` as its own process lives with the benchmarks (which drive it too).
export { startCoordinatorProcess, type CoordinatorProcess } from '../../bench/coordinator-process.js';
