#!/usr/bin/env bash
# Installs the system packages kiln's tests use, from Debian: the real Nix client
# (nix-bin), Guile with libgcrypt bindings (to check Guix-style signatures as guix does),
# PostgreSQL 15 (the tests start a private server of their own), Chromium (the
# dashboard test drives it headless through playwright-core), and systemd-analyze (the
# units in contrib/systemd are checked with it).
set -euo pipefail
need=()
command -v nix-store >/dev/null || need+=(nix-bin)
command -v guile >/dev/null || need+=(guile-3.0)
guile -c '(use-modules (gcrypt pk-crypto))' >/dev/null 2>&1 || need+=(guile-gcrypt)
guile -c '(use-modules (zlib))' >/dev/null 2>&1 || need+=(guile-zlib)
guile -c '(use-modules (zstd))' >/dev/null 2>&1 || need+=(guile-zstd)
command -v zstd >/dev/null || need+=(zstd)
command -v openssl >/dev/null || need+=(openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
command -v systemd-analyze >/dev/null || need+=(systemd)
# The serving benchmark (bench/serve.ts): load generator and the static-file yardstick.
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
