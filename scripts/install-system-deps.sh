#!/usr/bin/env bash
# Installs the system packages kiln's tests use, from Debian: the real Nix client
# (nix-bin), Guile with libgcrypt bindings (to check Guix-style signatures as guix does),
# PostgreSQL 15 (the tests start a private server of their own), Chromium (the
# dashboard test drives it headless through playwright-core), systemd-analyze (the
# units in contrib/systemd are checked with it), Ceph's monitor, OSD and radosgw (the
# blob store's S3 tests start a one-OSD cluster on memstore and its S3 gateway), nginx
# (serves what `kiln cache export` writes, for real Nix to substitute from), promtool
# from prometheus (/metrics is checked with `promtool check metrics`), and for the
# Python SDK: protoc and the gRPC Python plugin that generate it, and the
# python3-protobuf and python3-grpcio runtime its test runs on (all of one Debian
# release, so that the versions agree).
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
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v grpc_python_plugin >/dev/null || need+=(protobuf-compiler-grpc)
/usr/bin/python3 -c 'import google.protobuf' >/dev/null 2>&1 || need+=(python3-protobuf)
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || need+=(python3-grpcio)
command -v radosgw >/dev/null || need+=(radosgw)
command -v ceph-mon >/dev/null || need+=(ceph-mon)
command -v ceph-osd >/dev/null || need+=(ceph-osd)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v promtool >/dev/null || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
