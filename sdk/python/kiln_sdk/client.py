"""A connection to a kiln coordinator's AdminService over gRPC (Debian's python3-grpcio):
the coordinator's address and admin token found as the kiln CLI finds them, TLS for an
https:// address, and the few loops every script writes (paging, waiting)."""

import os
import time
import urllib.parse

import grpc

from kiln.v1 import admin_pb2, admin_pb2_grpc, types_pb2
from kiln_sdk.derivation import read_derivation_closure
from kiln_sdk.errors import KilnError

DEFAULT_COORDINATOR_URL = "http://127.0.0.1:8745"
# The file the coordinator writes its generated admin token to, in its data directory.
ADMIN_TOKEN_FILE = "admin-token"

FINAL_STATES = frozenset(
    [types_pb2.BUILD_STATE_SUCCEEDED, types_pb2.BUILD_STATE_FAILED, types_pb2.BUILD_STATE_CANCELED]
)


def default_data_dir(env=os.environ):
    """$KILN_DATA_DIR, else $XDG_DATA_HOME/kiln, else ~/.local/share/kiln (as the coordinator)."""
    if env.get("KILN_DATA_DIR"):
        return env["KILN_DATA_DIR"]
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "kiln")


def resolve_admin_token(env=os.environ):
    """KILN_ADMIN_TOKEN, else the token the coordinator wrote into its data directory."""
    if env.get("KILN_ADMIN_TOKEN"):
        return env["KILN_ADMIN_TOKEN"].strip()
    path = os.path.join(default_data_dir(env), ADMIN_TOKEN_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError:
        token = ""
    if token:
        return token
    where = f"KILN_DATA_DIR={env['KILN_DATA_DIR']}" if env.get("KILN_DATA_DIR") else "KILN_DATA_DIR is not set"
    raise KilnError(
        f"no admin token: none in KILN_ADMIN_TOKEN, and no file {path} ({where}). Either set KILN_ADMIN_TOKEN "
        "to the token, or set KILN_DATA_DIR to the coordinator's data directory (--data-dir, or its "
        f"KILN_DATA_DIR), where it wrote the token to the file {ADMIN_TOKEN_FILE} at its first start"
    )


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds "authorization: Bearer <token>" to every call (plain-text channels take no call credentials)."""

    def __init__(self, token):
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details):
        return _CallDetails(details, list(details.metadata or []) + [self._header])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_token(details), requests)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, details, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


def _channel(url, ca_file):
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise KilnError(f"coordinator address {url!r} is not an http:// or https:// URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    target = f"{host}:{port}"
    if parsed.scheme == "http":
        if ca_file:
            raise KilnError(f"a CA certificate ({ca_file}) was given for {url}, which is not https://")
        return grpc.insecure_channel(target)
    root = None
    if ca_file:
        try:
            with open(ca_file, "rb") as f:
                root = f.read()
        except OSError as err:
            raise KilnError(f"cannot read the CA certificate {ca_file}: {err.strerror}") from err
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=root))


class KilnClient:
    """`admin` is the generated AdminService stub (every call of proto/kiln/v1/admin.proto);
    the methods here are the loops around it. Close it, or use it as a context manager."""

    def __init__(self, url, token, ca_file=None, timeout=60.0):
        self.url = url
        self.timeout = timeout
        self._channel = grpc.intercept_channel(_channel(url, ca_file), _Bearer(token))
        self.admin = admin_pb2_grpc.AdminServiceStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get_build(self, build_id):
        return self.admin.GetBuild(admin_pb2.GetBuildRequest(id=build_id), timeout=self.timeout).build

    def list_builds(self, states=(), tags=None, derivation_path="", page_size=100):
        """Every build that matches, in the order the coordinator lists them, asking for one page at a time."""
        tag_list = [types_pb2.Tag(key=k, value=v) for k, v in (tags or {}).items()]
        token = ""
        while True:
            request = admin_pb2.ListBuildsRequest(
                states=list(states), tags=tag_list, derivation_path=derivation_path, page_size=page_size, page_token=token
            )
            page = self.admin.ListBuilds(request, timeout=self.timeout)
            yield from page.builds
            token = page.next_page_token
            if not token:
                return

    def submit_derivation(self, drv_path, priority=0, tags=None, ignore_if_output_exists=False):
        """Submits a build of the .drv at drv_path with the texts of its closure read from
        this machine's store. Returns the SubmitBuildResponse (its `build`, and `existing`)."""
        closure, sources = read_derivation_closure(drv_path)
        if sources:
            missing = self.admin.QueryMissingPaths(
                admin_pb2.QueryMissingPathsRequest(paths=sources), timeout=self.timeout
            ).missing
            if missing:
                # Uploading sources (NARs) is the kiln CLI's job; this SDK only sends texts.
                raise KilnError(
                    f"the coordinator's cache lacks input sources of {drv_path}: {', '.join(missing)}; "
                    "submit it once with `kiln build submit`, which uploads them"
                )
        request = admin_pb2.SubmitBuildRequest(
            derivation_path=os.path.abspath(drv_path),
            derivations=[types_pb2.DerivationText(path=p, text=t) for p, t in closure],
            priority=priority,
            tags=[types_pb2.Tag(key=k, value=v) for k, v in (tags or {}).items()],
            ignore_if_output_exists=ignore_if_output_exists,
        )
        return self.admin.SubmitBuild(request, timeout=self.timeout)

    def wait_for_build(self, build_id, timeout=3600.0, on_change=None):
        """Asks for the build until it is succeeded, failed or canceled (every 0.2 s at first,
        then less often, at most every 5 s) and returns it; KilnError after `timeout` seconds.
        on_change(build) is called whenever its state changes."""
        deadline = time.monotonic() + timeout
        interval, last = 0.2, None
        while True:
            build = self.get_build(build_id)
            if build.state != last:
                last = build.state
                if on_change:
                    on_change(build)
            if build.state in FINAL_STATES:
                return build
            left = deadline - time.monotonic()
            if left <= 0:
                raise KilnError(
                    f"build {build_id} is still {state_name(build.state)} after {timeout:g} s"
                )
            time.sleep(min(interval, left))
            interval = min(interval * 1.5, 5.0)


def state_name(state):
    """"succeeded" for BUILD_STATE_SUCCEEDED, as the kiln CLI prints states."""
    return types_pb2.BuildState.Name(state).removeprefix("BUILD_STATE_").lower()


def connect(coordinator=None, token=None, ca_file=None, env=os.environ, timeout=60.0):
    """A client for `coordinator` (else KILN_COORDINATOR, else http://127.0.0.1:8745) with
    `token` (else KILN_ADMIN_TOKEN, else the coordinator's token file, see
    resolve_admin_token); for https://, `ca_file` (else KILN_TLS_CA) is the CA certificate
    to trust instead of the system's."""
    url = coordinator or env.get("KILN_COORDINATOR") or DEFAULT_COORDINATOR_URL
    return KilnClient(url, token or resolve_admin_token(env), ca_file or env.get("KILN_TLS_CA"), timeout)
