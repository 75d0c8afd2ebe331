"""The add-on's background job client (core/client.py, no Blender) against a real mimo-server on
127.0.0.1: frames become PNGs in order with exactly one terminal event; a dead address ends in an
error within the timeout; the request builder validates like the server."""
from __future__ import annotations

import pathlib
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blender_addon.core import request as rq  # noqa: E402
from blender_addon.core.client import TERMINAL, JobClient  # noqa: E402
from blender_addon.core.png import encode_png  # noqa: E402


@pytest.fixture(scope="module")
def server():
    exe = pathlib.Path(sys.executable).parent / "mimo-server"
    proc = subprocess.Popen([str(exe), "--bind", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        m = re.search(r"tcp://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert m, "mimo-server did not start"
        yield m.group(0)
    finally:
        proc.terminate()
        proc.wait(10)


def _request(tmp_path, F=3, address="tcp://127.0.0.1:5555", mode="exact"):
    char = tmp_path / "char.png"
    char.write_bytes(encode_png(np.full((20, 10, 3), 128, np.uint8)))
    settings = rq.GenerateSettings(server=address, character=str(char), fps=24.0, job_name="t", mode=mode)
    body = {"global_orient": np.zeros((F, 3)), "body_pose": np.zeros((F, 21, 3)), "transl": np.zeros((F, 3)),
            "betas": np.zeros(6)}
    K = np.array([[60.0, 0, 16], [0, 60.0, 12], [0, 0, 1]])
    camera = {"K": np.tile(K, (F, 1, 1)), "R": np.tile(np.eye(3), (F, 1, 1)),
              "t": np.tile([0.0, 0.0, 4.0], (F, 1)), "width": 32, "height": 24}
    return rq.build_request(settings, [body], camera)


def _drain(client, limit=60.0):
    events, start = [], time.monotonic()
    while time.monotonic() - start < limit:
        ev = client.events.get(timeout=limit)
        events.append(ev)
        if ev.kind in TERMINAL:
            waited = time.monotonic() - start  # until the terminal event, not the check below
            time.sleep(0.3)  # nothing may follow a terminal event
            assert client.events.empty()
            return events, waited
    raise AssertionError("no terminal event")


def test_job_client_writes_frames_in_order(server, tmp_path):
    out = tmp_path / "job"
    out.mkdir()
    client = JobClient(server, _request(tmp_path, F=3), str(out)).start()
    events, _ = _drain(client)
    kinds = [e.kind for e in events]
    assert kinds[-1] == "done", events[-1]
    assert [e.data[0] for e in events if e.kind == "frame"] == [0, 1, 2]
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:05d}.png" for i in range(3)]
    assert events[-1].data[0] == 3 and events[-1].data[2] == [f"frame_{i:05d}.png" for i in range(3)]
    assert client.join(5)
    assert client.files == events[-1].data[2]  # what a job that ends early keeps
    progress = [e.data for e in events if e.kind == "progress"]
    assert progress and all(len(d) == 4 and isinstance(d[3], float) for d in progress)  # with the ETA


def test_job_client_reports_a_dead_server_within_the_timeout(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    client = JobClient(addr, _request(tmp_path, address=addr), str(tmp_path), timeout=1.5).start()
    events, waited = _drain(client, limit=10)
    assert events[-1].kind == "error" and "no answer" in events[-1].data[0]
    assert waited < 3.0


def test_cancel_before_the_server_answers(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    client = JobClient(addr, _request(tmp_path, address=addr), str(tmp_path), timeout=30,
                       cancel_grace_s=0.5).start()
    client.cancel()
    events, waited = _drain(client, limit=10)
    assert events[-1].kind == "cancelled" and waited < 2.0


def test_request_builder_validates_and_knows_loopback(tmp_path):
    req = _request(tmp_path, F=2)
    assert req.bodies[0].body_pose.dtype == np.float32 and req.camera.K.shape == (2, 3, 3)
    assert req.fps == 24.0 and req.width == 32 and req.backend == "preview"
    assert (req.mode, req.context, req.overlap) == ("exact", None, None)  # the server applies the mode's
    fast = _request(tmp_path, F=2, mode="fast")
    assert (fast.mode, fast.context) == ("fast", None)
    with pytest.raises(ValueError, match="character"):
        rq.build_request(rq.GenerateSettings(character="", backend="mimo"), [], {})
    settings = rq.GenerateSettings(character=str(tmp_path / "char.png"))
    bad = {"global_orient": np.zeros((2, 3)), "body_pose": np.zeros((2, 20, 3)), "transl": np.zeros((2, 3)),
           "betas": np.zeros(6)}
    cam = {"K": np.tile(np.eye(3), (2, 1, 1)), "R": np.tile(np.eye(3), (2, 1, 1)), "t": np.zeros((2, 3)),
           "width": 32, "height": 24}
    with pytest.raises(ValueError, match="body_pose"):
        rq.build_request(settings, [bad], cam)
    assert rq.is_loopback("tcp://127.0.0.1:5555") and rq.is_loopback("tcp://localhost:1")
    assert rq.is_loopback("tcp://[::1]:5555") and rq.is_loopback("ipc:///tmp/x")
    assert not rq.is_loopback("tcp://10.0.0.5:5555") and not rq.is_loopback("tcp://gpu.example.com:5555")


def test_a_1_1_server_gets_numbers_for_the_modes_defaults(tmp_path):
    """nil for "the mode's default" is 1.2 wire; a 1.1 server gets the numbers it always assumed."""
    from blender_addon.vendor import protocol as P

    fast = _request(tmp_path, F=2, mode="fast")
    new = P.Capabilities(protocol_version=[1, 2])
    assert rq.for_server(fast, new) is fast
    old = rq.for_server(fast, P.Capabilities(protocol_version=[1, 1]))
    assert (old.context, old.overlap, old.steps, old.roi_size) == (32, 4, 25, 784)
    P.validate_request(old)
    exact = rq.for_server(_request(tmp_path, F=2), P.Capabilities(protocol_version=[1, 1]))
    assert (exact.context, exact.overlap) == (24, 4)
