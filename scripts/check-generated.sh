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
  # Compare against main's last committed protos, once there are any.
  if git rev-parse -q --verify 'HEAD~1' >/dev/null && git cat-file -e 'HEAD~1:proto' 2>/dev/null; then
    npx buf breaking proto --against '.git#ref=HEAD~1,subdir=proto'
  fi
fi
if [ -f drizzle.config.ts ]; then
  out=$(npx drizzle-kit generate 2>&1)
  if [ -n "$(git status --porcelain -- migrations)" ]; then
    echo "$out"; git status --porcelain -- migrations
    echo "migrations/ is out of date: run 'npx drizzle-kit generate' and commit the result" >&2; exit 1
  fi
fi
