"""Where the server may listen, and CurveZMQ keys (server/PROTOCOL.md: loopback by default; any other
address needs CurveZMQ unless the operator says ``--insecure``).

Key folder layout written by ``mimo-server keys generate DIR``::

    DIR/server.key              server public key   (give to clients)
    DIR/server.key_secret       server key pair     (stays on the server)
    DIR/client.key              a first client's public key
    DIR/client.key_secret       that client's key pair (give to that client)
    DIR/authorized_clients/     public keys the server accepts (client.key is copied here)
"""
from __future__ import annotations

import errno
import ipaddress
import os
import pathlib
import shutil
import socket

import zmq

AUTHORIZED = "authorized_clients"


BIND_SCHEMES = ("tcp", "ipc", "inproc")


def split_tcp(endpoint: str) -> tuple[str, str]:
    """``tcp://HOST:PORT`` -> ``(host, port)``; IPv6 hosts in brackets come back without them.
    Raises ``ValueError`` for anything else, including ZeroMQ's ``SOURCE;DEST`` form (for a bind
    ZeroMQ listens on the part after the ``;``, which would hide it from a check of the first)."""
    scheme, sep, rest = endpoint.partition("://")
    if scheme != "tcp" or not sep:
        raise ValueError(f"bind: expected tcp://HOST:PORT, got {endpoint!r}")
    if ";" in rest:
        raise ValueError(f"bind: {endpoint!r} has ZeroMQ's 'SOURCE;ADDRESS' form, which is for "
                         "connecting; give one address such as tcp://127.0.0.1:5555")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not (port == "*" or (port.isdigit() and int(port) <= 65535)):
        raise ValueError(f"bind: expected tcp://HOST:PORT with a port 0..65535 or *, got {endpoint!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def _loopback_host(host: str) -> bool:
    """True for literal loopback addresses (127.0.0.0/8, ::1, IPv4-mapped 127.x) and
    ``localhost``. Interface names, host names and wildcards count as reachable from outside."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def is_loopback(endpoint: str) -> bool:
    """True for ``tcp://127.x.x.x:*``, ``tcp://[::1]:*``, ``tcp://localhost:*``, ``ipc://`` and
    ``inproc://`` endpoints (reachable only from this machine); False for everything else,
    including every form this module cannot prove local (``*``, interface and host names,
    ``SOURCE;ADDRESS``, other transports)."""
    if not isinstance(endpoint, str):
        return False
    scheme, sep, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc") and sep and rest:
        return True
    try:
        host, _ = split_tcp(endpoint)
    except ValueError:
        return False
    return _loopback_host(host)


def check_bind(endpoints: str | list[str], curve: bool, insecure: bool) -> list[str]:
    """Check every endpoint the server will bind, before anything is loaded. Returns them as a
    list. Raises ``ValueError`` (starting ``"bind: "``) for a malformed endpoint, a transport
    other than tcp/ipc/inproc, or an endpoint reachable from other machines without CurveZMQ
    when the operator did not accept that with ``insecure``. :func:`check_bound` repeats the
    check on the addresses ZeroMQ actually bound."""
    endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    if not endpoints:
        raise ValueError("bind: expected at least one endpoint")
    for endpoint in endpoints:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise ValueError(f"bind: expected a ZeroMQ endpoint like tcp://127.0.0.1:5555, got {endpoint!r}")
        scheme = endpoint.partition("://")[0]
        if scheme not in BIND_SCHEMES:
            raise ValueError(f"bind: transport {scheme!r} is not supported; use tcp://, ipc:// or "
                             f"inproc:// (got {endpoint!r})")
        if scheme == "tcp":
            split_tcp(endpoint)  # malformed -> ValueError
        if not (curve or insecure or is_loopback(endpoint)):
            raise ValueError(f"bind: {endpoint} is (or may be) reachable from other machines; use a "
                             "loopback address such as tcp://127.0.0.1:5555, or pass --curve DIR "
                             "(keys from `mimo-server keys generate DIR`) or, on a trusted network, "
                             "--insecure")
    return endpoints


def check_bound(address: str, curve: bool, insecure: bool) -> None:
    """After binding: ``address`` is the socket's ``LAST_ENDPOINT`` (what ZeroMQ really listens
    on). Raises ``ValueError`` if it is reachable from other machines without CurveZMQ."""
    if not (curve or insecure or is_loopback(address)):
        raise ValueError(f"bind: ZeroMQ listens on {address}, which is reachable from other "
                         "machines; refusing to serve without --curve DIR or --insecure")


def probe_tcp_port(endpoint: str) -> None:
    """Raise ``ValueError`` when a TCP endpoint's fixed port is already taken (the likeliest
    mistake: a second server on the default port), before any backend is loaded."""
    if not endpoint.startswith("tcp://"):
        return
    host, port = split_tcp(endpoint)
    if port in ("0", "*") or not (_loopback_host(host) or _is_ip(host) or host == "*"):
        return  # an interface or host name: ZeroMQ resolves it; its bind reports a clash
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    addr = {"*": "", "localhost": "127.0.0.1"}.get(host, host)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ does
        try:
            s.bind((addr, int(port)))
            s.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ValueError(f"bind: {endpoint} is already in use (another mimo-server?); stop "
                                 "it or choose another port, e.g. --bind tcp://127.0.0.1:5556") from None
            raise ValueError(f"bind: cannot listen on {endpoint}: {exc.strerror}") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


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


