"""kiln's Python SDK: the AdminService client generated from proto/ (the kiln.v1
package beside this one) and a small wrapper that finds the admin token as the kiln CLI
does, speaks TLS, pages through ListBuilds, submits a derivation and waits for a build."""

import os

# gRPC's C core logs a failed TLS handshake on stderr besides raising it; the raised
# error says the same, so keep stderr to what the script prints unless asked otherwise.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from kiln_sdk.client import FINAL_STATES, KilnClient, connect, resolve_admin_token, state_name
from kiln_sdk.derivation import read_derivation_closure
from kiln_sdk.errors import KilnError

__all__ = ["FINAL_STATES", "KilnClient", "KilnError", "connect", "read_derivation_closure", "resolve_admin_token", "state_name"]
