"""The SDK's one error type: what went wrong, in words a person can act on."""


class KilnError(Exception):
    """No token, an unreadable .drv, a build that did not end in time; refusals of the
    coordinator itself arrive as grpc.RpcError with its status and message."""
