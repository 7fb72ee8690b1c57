#!/usr/bin/env bash
# The one command that sets up a fresh machine and runs kiln's coordinator on the
# embedded database (PGlite), with a local agent beside it when Nix is installed:
# installs dependencies, builds, puts `kiln` on PATH, starts.
# Arguments are passed to `kiln coordinator` (e.g. --listen 0.0.0.0:8745).
set -euo pipefail
cd "$(dirname "$0")/.."
npm install --no-audit --no-fund
npm run build
# `npm link` puts the `kiln` command on PATH (in npm's global bin directory).
npm link --no-audit --no-fund >/dev/null
exec node dist/src/cli/main.js coordinator --local-agent "$@"
