#!/usr/bin/env bash
# The one command that sets up a fresh machine for kiln's tests and runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
npm install --no-audit --no-fund
npm test
