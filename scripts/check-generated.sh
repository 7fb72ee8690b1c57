#!/usr/bin/env bash
# Fails when gen/ (or the Python SDK's sdk/python/kiln/) is not what `buf generate` makes
# of proto/, or when src/db/ has changes that `drizzle-kit generate` would turn into a
# new migration.
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
# The Python SDK's code, made by Debian's protoc and grpc_python_plugin (see
# buf.gen.python.yaml); removed first so that the code of a deleted .proto shows too.
# Then it must load in Debian's python3-protobuf and python3-grpcio: a protoc newer than
# the runtime makes code that refuses to import.
if [ -f buf.gen.python.yaml ]; then
  rm -rf sdk/python/kiln
  npx buf generate --template buf.gen.python.yaml
  if [ -n "$(git status --porcelain -- sdk/python/kiln)" ]; then
    git status --porcelain -- sdk/python/kiln
    echo "sdk/python/kiln/ is out of date: run 'npm run generate' and commit the result" >&2; exit 1
  fi
  PYTHONPATH=sdk/python PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -c 'import kiln.v1.admin_pb2_grpc, kiln.v1.agent_pb2_grpc, kiln_sdk'
fi
if [ -f drizzle.config.ts ]; then
  out=$(npx drizzle-kit generate 2>&1)
  if [ -n "$(git status --porcelain -- migrations)" ]; then
    echo "$out"; git status --porcelain -- migrations
    echo "migrations/ is out of date: run 'npx drizzle-kit generate' and commit the result" >&2; exit 1
  fi
fi
