"""Where mimo-server may listen, CurveZMQ accept/reject over loopback, and the CLI around keys."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
import zmq.auth

from mimo.pipeline.backends import load_backend
from server import cli
from server import protocol as P
from server.client import Client, MimoClientError, load_curve_keys
from server.core import Server
from server.security import check_bind, generate_keys, is_loopback, load_server_keys

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CurveZMQ")


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.2.1:0", True), ("tcp://localhost:1", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/x", True), ("inproc://x", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://192.168.1.5:5555", False),
    ("tcp://eth0:5555", False), ("tcp://example.org:5555", False),
])
def test_is_loopback(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_non_loopback_bind_needs_curve_or_insecure():
    with pytest.raises(ValueError, match=r"^bind: .*--curve DIR.*--insecure"):
        check_bind("tcp://0.0.0.0:5555", curve=False, insecure=False)
    check_bind("tcp://0.0.0.0:5555", curve=True, insecure=False)
    check_bind("tcp://0.0.0.0:5555", curve=False, insecure=True)
    with pytest.raises(ValueError, match="^bind:"):
        Server({"preview": load_backend("preview")}, bind="tcp://*:0")
    with pytest.raises(ValueError, match="^bind:"):
        Server({"preview": load_backend("preview")}, bind="5555")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    assert cli.main(["keys", "generate", str(root)]) == 0
    return root


def test_keys_generate_writes_the_documented_layout(keys):
    for name in ("server.key", "server.key_secret", "client.key", "client.key_secret",
                 "authorized_clients/client.key"):
        assert (keys / name).is_file(), name
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    pub, sec = zmq.auth.load_certificate(keys / "server.key_secret")
    assert len(pub) == 40 and len(sec) == 40
    with pytest.raises(ValueError, match="^client_name:"):
        generate_keys(keys, "client")  # never overwrite a key pair


@pytest.fixture(scope="module")
def curve_server(keys):
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0",
                 curve=load_server_keys(keys)).start()
    yield srv
    srv.stop()


def test_authorized_curve_client_runs_a_job(keys, curve_server):
    curve = load_curve_keys(str(keys / "server.key"), str(keys / "client.key_secret"))
    with Client(curve_server.address, timeout=5, curve=curve) as c:
        assert c.hello().backends == ["preview"]
        codes = np.full((2, 8, 8, 3), 7, np.uint8)
        req = P.GenerateRequest(character=b"\x89PNG\r\n\x1a\n", codes=codes, width=8, height=8)
        req.character = _png()
        frames, _ = c.generate(req)
        np.testing.assert_array_equal(frames, codes)


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    return buf.getvalue()


def test_unknown_curve_client_is_rejected_with_a_message(keys, curve_server, tmp_path):
    zmq.auth.create_certificates(tmp_path, "stranger")
    curve = load_curve_keys(str(keys / "server.key"), str(tmp_path / "stranger.key_secret"))
    start = time.monotonic()
    with Client(curve_server.address, timeout=1.0, curve=curve) as c:
        with pytest.raises(MimoClientError, match="CurveZMQ.*allowed clients"):
            c.hello()
    assert time.monotonic() - start < 3


def test_plain_client_cannot_talk_to_a_curve_server(curve_server):
    with Client(curve_server.address, timeout=1.0) as c:
        with pytest.raises(MimoClientError, match="no answer"):
            c.hello()


def test_wrong_server_key_is_rejected(keys, curve_server, tmp_path):
    zmq.auth.create_certificates(tmp_path, "impostor")
    curve = load_curve_keys(str(tmp_path / "impostor.key"), str(keys / "client.key_secret"))
    with Client(curve_server.address, timeout=1.0, curve=curve) as c:
        with pytest.raises(MimoClientError, match="CurveZMQ"):
            c.hello()


def test_curve_server_refuses_an_empty_authorized_folder(tmp_path):
    generate_keys(tmp_path)
    for f in (tmp_path / "authorized_clients").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="^curve: no client public keys"):
        load_server_keys(tmp_path)


def test_cli_serve_and_status_end_to_end(keys, capsys):
    """`mimo-server --bind tcp://127.0.0.1:0 --curve DIR` in a subprocess; `status` in-process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    exe = pathlib.Path(sys.executable).parent / "mimo-server"
    proc = subprocess.Popen([str(exe), "--bind", "tcp://127.0.0.1:0", "--curve", str(keys),
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    try:
        address = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and address is None:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"listening on (tcp://\S+)", line)
            address = m.group(1) if m and line.startswith("mimo-server") else None
        assert address, "server did not report its address"
        assert cli.main(["status", "--connect", address, "--curve", str(keys)]) == 0
        out = capsys.readouterr().out
        assert f"protocol {P.PROTOCOL_VERSION[0]}.{P.PROTOCOL_VERSION[1]}" in out and "backends: preview" in out and "device: cpu" in out
        assert cli.main(["status", "--connect", address, "--timeout", "0.5"]) == 1  # no keys
        assert "no answer" in capsys.readouterr().err
        proc.terminate()  # SIGTERM: a clean stop
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait(30)


def test_cli_refuses_an_open_bind_without_curve(capsys):
    assert cli.main(["serve", "--bind", "tcp://0.0.0.0:0"]) == 2
    assert "--insecure" in capsys.readouterr().err
