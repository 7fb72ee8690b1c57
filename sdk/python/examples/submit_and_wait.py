#!/usr/bin/env python3
"""Submits a derivation to a kiln coordinator, waits for its build and prints how it went.

    python3 sdk/python/examples/submit_and_wait.py [--priority N] [--tag k=v]... /nix/store/…-x.drv

The coordinator and token as for the kiln CLI: KILN_COORDINATOR (default
http://127.0.0.1:8745), KILN_ADMIN_TOKEN or the coordinator's KILN_DATA_DIR, and
KILN_TLS_CA for an https:// coordinator with a certificate of its own. Exits 0 only if
the build succeeded."""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kiln_sdk import connect, state_name  # noqa: E402
from kiln_sdk.script import run  # noqa: E402
from kiln.v1 import types_pb2  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="Submit a derivation to kiln and wait for its build.")
    parser.add_argument("derivation", help="path of the .drv to build")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--tag", action="append", default=[], metavar="K=V", help="a tag the build carries (repeatable)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the build (default 3600)")
    args = parser.parse_args()
    tags = {}
    for tag in args.tag:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            parser.error(f"--tag {tag!r} is not key=value")
        tags[key] = value

    with connect() as kiln:
        submitted = kiln.submit_derivation(args.derivation, priority=args.priority, tags=tags)
        build = submitted.build
        print(f"{'existing' if submitted.existing else 'submitted'} build {build.id} of {build.derivation_path}", flush=True)
        build = kiln.wait_for_build(
            build.id, timeout=args.timeout, on_change=lambda b: print(f"{b.id} {state_name(b.state)}", flush=True)
        )
        if build.state != types_pb2.BUILD_STATE_SUCCEEDED:
            last = kiln.get_build(build.id).attempts
            why = f": {last[-1].message}" if last and last[-1].message else ""
            print(f"kiln: build {build.id} {state_name(build.state)}{why}", file=sys.stderr)
            return 1
        for output in build.outputs:
            print(f"{output.name} {output.path}")
        return 0


if __name__ == "__main__":
    run(main)
