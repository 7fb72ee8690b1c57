"""How a script built on the SDK ends: its exit status, and kiln's or the coordinator's
words on standard error instead of a traceback."""

import sys

import grpc

from kiln_sdk.errors import KilnError


def run(main):
    """sys.exit(main()); 2 with the message for a KilnError (no token, unreadable .drv, a
    build that did not end in time), 1 with the gRPC status for a refused call."""
    try:
        sys.exit(main())
    except KilnError as err:
        print(f"kiln: {err}", file=sys.stderr)
        sys.exit(2)
    except grpc.RpcError as err:
        print(f"kiln: {err.code().name.lower()}: {err.details()}", file=sys.stderr)
        sys.exit(1)
