"""Where the server may listen, and CurveZMQ keys (DESIGN §8: loopback by default; any other
address needs CurveZMQ unless the operator says ``--insecure``).

Key folder layout written by ``mimo-server keys generate DIR``::

    DIR/server.key              server public key   (give to clients)
    DIR/server.key_secret       server key pair     (stays on the server)
    DIR/client.key              a first client's public key
    DIR/client.key_secret       that client's key pair (give to that client)
    DIR/authorized_clients/     public keys the server accepts (client.key is copied here)
"""
from __future__ import annotations

import ipaddress
import os
import pathlib
import shutil
import urllib.parse

import zmq

AUTHORIZED = "authorized_clients"


def is_loopback(endpoint: str) -> bool:
    """True for ``tcp://127.x.x.x:*``, ``tcp://[::1]:*``, ``tcp://localhost:*``, ``ipc://`` and
    ``inproc://`` endpoints (reachable only from this machine)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp" or not rest:
        return False
    host = urllib.parse.urlsplit("//" + rest).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name, "*" or a host name: assume it is reachable from outside


def check_bind(endpoint: str, curve: bool, insecure: bool) -> None:
    """Raise ``ValueError`` when ``endpoint`` is reachable from other machines without CurveZMQ
    and the operator did not explicitly accept that with ``insecure``."""
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise ValueError(f"bind: expected a ZeroMQ endpoint like tcp://127.0.0.1:5555, got {endpoint!r}")
    if not (curve or insecure or is_loopback(endpoint)):
        raise ValueError(f"bind: {endpoint} is reachable from other machines; pass --curve DIR "
                         "(keys from `mimo-server keys generate DIR`) or, on a trusted network, "
                         "--insecure")


def generate_keys(folder: str | os.PathLike, client_name: str = "client") -> dict[str, pathlib.Path]:
    """Create the server key pair (kept if it exists) and a client key pair named
    ``client_name``, and authorize that client. Returns the paths written."""
    import zmq.auth

    if not zmq.has("curve"):
        raise RuntimeError("this libzmq has no CurveZMQ support")
    if not client_name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"client_name: expected letters, digits, '-' or '_', got {client_name!r}")
    root = pathlib.Path(folder)
    (root / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    if not (root / "server.key_secret").exists():
        zmq.auth.create_certificates(root, "server")
    if (root / f"{client_name}.key_secret").exists():
        raise ValueError(f"client_name: {root / client_name}.key_secret exists already")
    zmq.auth.create_certificates(root, client_name)
    shutil.copy(root / f"{client_name}.key", root / AUTHORIZED / f"{client_name}.key")
    for secret in root.glob("*.key_secret"):
        secret.chmod(0o600)
    return {"server_public": root / "server.key", "server_secret": root / "server.key_secret",
            "client_public": root / f"{client_name}.key",
            "client_secret": root / f"{client_name}.key_secret", "authorized": root / AUTHORIZED}


def load_server_keys(folder: str | os.PathLike) -> tuple[bytes, bytes, str]:
    """-> (server public, server secret, authorized clients folder) for :class:`server.core.Server`."""
    import zmq.auth

    root = pathlib.Path(folder)
    secret_file = root / "server.key_secret"
    if not secret_file.exists():
        raise ValueError(f"curve: {secret_file} not found; run `mimo-server keys generate {root}`")
    public, secret = zmq.auth.load_certificate(secret_file)
    allowed = root / AUTHORIZED
    if not allowed.is_dir() or not any(allowed.glob("*.key")):
        raise ValueError(f"curve: no client public keys in {allowed}; no client could connect")
    return public, secret, str(allowed)


def start_authenticator(context: zmq.Context, authorized_dir: str):
    """A ZAP handler on ``context`` that accepts only CurveZMQ clients whose public key file lies
    in ``authorized_dir``."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=authorized_dir)
    return auth


