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
  # No change to the API may break its clients: each of the recent commits that changed
  # proto/ is checked against the version before it. A deliberate break says so with
  # "[breaking-api]" in its commit message.
  mapfile -t changes < <(git log -n 20 --format=%H -- proto)
  for ((i = 0; i + 1 < ${#changes[@]}; i++)); do
    commit=${changes[i]}; previous=${changes[i+1]}
    git log -1 --format=%B "$commit" | grep -qF '[breaking-api]' && continue
    npx buf breaking ".git#ref=$commit,subdir=proto" --against ".git#ref=$previous,subdir=proto" ||
      { echo "commit $commit breaks the API of $previous (see above)" >&2; exit 1; }
  done
fi
if [ -f drizzle.config.ts ]; then
  out=$(npx drizzle-kit generate 2>&1)
  if [ -n "$(git status --porcelain -- migrations)" ]; then
    echo "$out"; git status --porcelain -- migrations
    echo "migrations/ is out of date: run 'npx drizzle-kit generate' and commit the result" >&2; exit 1
  fi
fi
