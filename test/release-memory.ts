// Runs as each test file starts, in its fresh context. The files a worker ran before have
// left garbage that V8 is slow to collect: an embedded PGlite database keeps its
// WebAssembly memories (four of them, a few hundred MB touched) until a GC, even once
// closed. Left until the worker exits, unmapping them all took longer than jest's 500 ms
// ("A worker process has failed to exit gracefully and has been force exited"); collected
// here, only the last file's remain. `npm test` runs node with --expose-gc; without it
// (one file run by hand) this does nothing.
(globalThis as { gc?: () => void }).gc?.();
