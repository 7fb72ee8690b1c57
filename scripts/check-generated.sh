#!/usr/bin/env bash
# Fails when gen/ is not what `buf generate` makes of proto/, or when src/db/ has
# changes that `drizzle-kit generate` would turn into a new migration.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f buf.gen.yaml ]; then
  npx buf generate
  if [ -n "$(git status --porcelain -- gen)" ]; then
    git status --porcelain -- gen; git diff --stat -- gen
    echo "gen/ is out of date: run 'npx buf generate' and commit the result" >&2; exit 1
  fi
  # No change may break the API's clients: the protos are checked against the last
  # released version, the commit named in .ci/api-baseline. A deliberate break moves
  # that file to a newer commit in the same change, for a reviewer to see.
  if [ -f .ci/api-baseline ]; then
    baseline=$(tr -d '[:space:]' < .ci/api-baseline)
    if ! git cat-file -e "$baseline^{commit}" 2>/dev/null; then
      echo ".ci/api-baseline names $baseline, which is not in this repository's history" >&2; exit 1
    fi
    npx buf breaking proto --against ".git#ref=$baseline,subdir=proto"
  fi
fi
if [ -f drizzle.config.ts ]; then
  out=$(npx drizzle-kit generate 2>&1)
  if [ -n "$(git status --porcelain -- migrations)" ]; then
    echo "$out"; git status --porcelain -- migrations
    echo "migrations/ is out of date: run 'npx drizzle-kit generate' and commit the result" >&2; exit 1
  fi
fi
