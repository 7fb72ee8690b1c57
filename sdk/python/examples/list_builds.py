#!/usr/bin/env python3
"""Lists a kiln coordinator's builds, one line each (id, state, derivation), paging
through ListBuilds; the coordinator and token as in submit_and_wait.py.

    python3 sdk/python/examples/list_builds.py [--state succeeded]... [--tag k=v]... [--page-size N]"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kiln_sdk import connect, state_name  # noqa: E402
from kiln_sdk.script import run  # noqa: E402
from kiln.v1 import types_pb2  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="List kiln's builds.")
    parser.add_argument("--state", action="append", default=[], help="only builds in this state (repeatable)")
    parser.add_argument("--tag", action="append", default=[], metavar="K=V", help="only builds with this tag (repeatable)")
    parser.add_argument("--page-size", type=int, default=100, help="builds per ListBuilds call (default 100)")
    args = parser.parse_args()
    states = []
    for state in args.state:
        try:
            states.append(types_pb2.BuildState.Value(f"BUILD_STATE_{state.upper()}"))
        except ValueError:
            parser.error(f"--state {state!r} is not one of scheduled, allocated, started, succeeded, failed, canceled")
    tags = dict(tag.partition("=")[::2] for tag in args.tag)
    with connect() as kiln:
        for build in kiln.list_builds(states=states, tags=tags, page_size=args.page_size):
            print(f"{build.id} {state_name(build.state)} {build.derivation_path}")
    return 0


if __name__ == "__main__":
    run(main)
