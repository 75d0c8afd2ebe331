"""mimo-server against clients that die, stall, flood or probe: killed clients free the worker at
once, a client that takes no frames is cancelled, queued memory is capped, every refusal is typed
and names the request field, and ``status`` shows a client only its own jobs."""
from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq
from test_protocol_fuzz import _seed_messages, _structured_inputs
from test_server import ROOT, codes_request, png

from mimo.errors import FieldError
from mimo.pipeline.backends import load_backend
from server import cli
from server import protocol as P
from server.client import Client, MimoClientError
from server.core import Server
from server.jobs import _job_error


def _server(**kw) -> Server:
    kw.setdefault("heartbeat_timeout_s", 60.0)  # far beyond every wait below: not the mechanism
    return Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0", **kw).start()


def _raw(address: str) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.linger = 0
    s.connect(address)
    return s


def _recv(sock, want, timeout=10.0, heartbeat=False):
    """Next message of type ``want`` (others dropped); sends heartbeats meanwhile if asked."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if heartbeat:
            sock.send_multipart(P.encode(P.Heartbeat(time=time.time())))
        if sock.poll(200):
            msg = P.decode(sock.recv_multipart())
            if isinstance(msg, want):
                return msg
    raise AssertionError(f"no {want} within {timeout} s")


# --- clients that go away or stop taking frames --------------------------------------------------
def test_a_killed_client_frees_its_jobs_at_once_and_the_next_job_runs():
    srv = _server()
    script = f"""
import sys, time, numpy as np
sys.path.insert(0, {ROOT!r})
from server.client import Client
from server import protocol as P
c = Client({srv.address!r}, timeout=5, heartbeat_s=0.1)
req = P.GenerateRequest(character={png()!r}, codes=np.full((8, 16, 16, 3), 9, np.uint8),
                        width=16, height=16)
job = c.submit(req, credit=1)
for e in c.events(job.job_id):
    if isinstance(e, P.Frame):
        print(job.job_id, flush=True)
        time.sleep(600)  # holds the job (no more credit) until killed
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        with Client(srv.address, timeout=30, heartbeat_s=0.2) as other:
            assert proc.stdout.readline().strip()  # the first job is running, waiting for credit
            queued = other.submit(codes_request(F=2))
            st = other.status()
            assert st.other_jobs == 1 and [r["job_id"] for r in st.jobs] == [queued.job_id]
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            killed_at = time.monotonic()
            events = list(other.events(queued.job_id))
            waited = time.monotonic() - killed_at
            assert isinstance(events[-1], P.Done), events[-1]
            # the heartbeat timeout is 60 s: only noticing the closed connection explains this
            assert waited < 10.0, waited
            assert other.status().other_jobs == 0
    finally:
        proc.kill()
        srv.stop()


def test_a_client_that_heartbeats_but_grants_no_credit_is_cancelled_with_a_reason():
    srv = _server(stall_timeout_s=1.0)
    try:
        greedy = _raw(srv.address)
        req = codes_request(F=6, W=16, H=16)
        greedy.send_multipart(P.encode(P.Submit(request=req, credit=1, tag="g")))
        job_id = _recv(greedy, P.Accepted).job_id
        with Client(srv.address, timeout=30, heartbeat_s=0.2) as polite:
            nxt = polite.submit(codes_request(F=2))
            err = _recv(greedy, P.Error, timeout=20, heartbeat=True)  # heartbeats, never credit
            assert err.code == "cancelled" and err.job_id == job_id
            assert "took no frames for 1 s" in err.message
            assert isinstance(list(polite.events(nxt.job_id))[-1], P.Done)
        greedy.close()
    finally:
        srv.stop()


# --- memory the clients can make the server hold --------------------------------------------------
def test_queued_bytes_are_capped_across_clients_with_a_typed_busy_error():
    srv = _server(limits={"max_queued_bytes": 30_000, "max_jobs_per_client": 8})
    try:
        with Client(srv.address, timeout=10) as a, Client(srv.address, timeout=10) as b:
            req = codes_request(F=8, W=16, H=16)  # 2 x 6 KB of buffers
            running = a.submit(req, credit=1)  # stays while it waits for credit
            a.submit(req)
            with pytest.raises(MimoClientError) as e:
                b.submit(req)  # a third 12 KB request would pass 30 KB in all
            assert e.value.error.code == "busy" and "30000 bytes" in e.value.error.message
            a.cancel(running.job_id)
            list(a.events(running.job_id))
            b.submit(req)  # room again
    finally:
        srv.stop()


def test_total_job_count_is_capped_across_connections():
    srv = _server(limits={"max_jobs": 2})
    clients = [Client(srv.address, timeout=10) for _ in range(3)]
    try:
        clients[0].submit(codes_request(F=8, W=16, H=16), credit=1)
        clients[1].submit(codes_request(F=2))
        with pytest.raises(MimoClientError) as e:
            clients[2].submit(codes_request(F=2))
        assert e.value.error.code == "busy"
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_oversized_messages_are_dropped_on_the_socket_and_the_server_keeps_serving():
    srv = _server(limits={"max_message_bytes": 4096})
    try:
        raw = _raw(srv.address)
        raw.send_multipart([b"\x00" * 10_000])  # one frame over the limit: ZeroMQ drops the peer
        raw.send_multipart(P.encode(P.Hello()) + [b"x" * 100] * 300)  # too many frames
        with Client(srv.address, timeout=10) as c:
            caps = c.hello()
            assert caps.limits["max_message_bytes"] == 4096
            with pytest.raises(MimoClientError, match="max_message_bytes"):
                c.submit(codes_request(F=3, W=16, H=16))  # refused before sending
        many = _raw(srv.address)
        many.send_multipart(P.encode(P.Hello()) + [b"x"] * 300)
        reply = _recv(many, P.Error)
        assert reply.code == "bad_message" and "256 buffers" in reply.message
        many.send_multipart(P.encode(P.Hello()))
        _recv(many, P.Capabilities)
        raw.close()
        many.close()
    finally:
        srv.stop()


# --- what a client sees ---------------------------------------------------------------------------
def test_status_shows_a_client_its_own_jobs_and_only_counts_of_others():
    srv = _server()
    try:
        with Client(srv.address, timeout=10) as a, Client(srv.address, timeout=10) as b:
            job = a.submit(codes_request(F=8, W=16, H=16), credit=1)
            end = time.monotonic() + 30
            while a.status().running != job.job_id and time.monotonic() < end:
                time.sleep(0.05)  # until the worker has taken it (it then waits for credit)
            sa, sb = a.status(), b.status()
            assert [r["job_id"] for r in sa.jobs] == [job.job_id] and sa.running == job.job_id
            assert sb.jobs == [] and sb.running == "" and sb.other_jobs == 1
            assert job.job_id not in repr(sb)
            a.cancel(job.job_id)
    finally:
        srv.stop()


def test_capabilities_give_each_body_models_betas_and_submit_refuses_more():
    srv = _server()
    try:
        with Client(srv.address, timeout=10) as c:
            caps = c.hello()
            assert caps.body_betas["open"] == 6 and set(caps.body_betas) == set(caps.body_models)
            F = 1
            req = P.GenerateRequest(
                character=png(), width=16, height=16,
                bodies=[P.BodyParams(global_orient=np.zeros((F, 3)), body_pose=np.zeros((F, 21, 3)),
                                     transl=np.zeros((F, 3)), betas=np.zeros(10))],
                camera=P.CameraParams(K=np.array([[[20.0, 0, 8], [0, 20, 8], [0, 0, 1]]]),
                                     R=np.diag([1.0, -1, -1])[None], t=np.array([[0, 0, 3.0]]),
                                     width=16, height=16))
            with pytest.raises(P.ProtocolError) as e:  # the client checks with the server's table
                c.submit(req)
            assert e.value.field == "bodies[0].betas" and "'open'" in e.value.message
            with pytest.raises(MimoClientError) as e:  # and so does the server, at submit
                c.submit(req, validate=False)
            assert e.value.error.code == "invalid_field" and e.value.error.field == "bodies[0].betas"
            req.bodies[0].betas = np.zeros(6)
            req.camera.K = req.camera.K.copy()
            req.camera.K[0, 2, 2] = 1 + 1e-7  # close enough for validation; exact for the rasterizer
            frames, _ = c.generate(req)
            assert frames.shape == (1, 16, 16, 3)
    finally:
        srv.stop()


def test_errors_name_the_request_field_never_an_internal_variable():
    srv = _server()
    try:
        raw = _raw(srv.address)
        frames = [bytes(f) for f in P.encode(P.Submit(request=codes_request(), tag="t"))]
        header = msgpack.unpackb(frames[0])
        header["request"]["width"] = "wide"
        raw.send_multipart([msgpack.packb(header), *frames[1:]])
        err = _recv(raw, P.Error)
        assert (err.code, err.field, err.tag) == ("invalid_field", "width", "t")
        raw.close()
    finally:
        srv.stop()
    e = _job_error("j", ValueError("vertices: 3 frames of 8x8 exceed 10 output pixels"))
    assert e.code == "model_error" and e.field == ""
    # the field travels in a FieldError; text that only looks like "field: message" names nothing
    e = _job_error("j", FieldError("bodies[1].transl", "contains NaN or inf"))
    assert (e.code, e.field, e.message) == ("invalid_field", "bodies[1].transl", "contains NaN or inf")
    e = _job_error("j", ValueError("bodies[1].transl: contains NaN or inf"))
    assert e.code == "model_error" and e.field == ""
    e = _job_error("j", ValueError("code_mask: expected shape (1, 8, 8)"))
    assert e.code == "model_error" and e.field == ""


def test_no_wire_input_gets_an_internal_error():
    """A sample of the decoder fuzz inputs sent to a real server: every reply is typed and the
    server still answers afterwards."""
    srv = _server()
    try:
        inputs = list(_structured_inputs(_seed_messages()))
        sample = random.Random(7).sample(inputs, 3000)
        raw = _raw(srv.address)
        replies = []

        def sync(tag: str) -> None:
            """Send a hello and read until its capabilities come back: the replies of one client come
            in order, so everything sent before it has been answered (and at most one batch of replies
            waits in the sockets' queues, far below their high-water marks)."""
            raw.send_multipart(P.encode(P.Hello(client=tag)))
            end = time.monotonic() + 60
            while time.monotonic() < end:
                if raw.poll(500):
                    msg = P.decode(raw.recv_multipart())
                    replies.append(msg)
                    if isinstance(msg, P.Capabilities):
                        return

        for i, frames in enumerate(sample):
            raw.send_multipart(frames or [b""])
            if i % 100 == 99:
                sync(f"batch-{i}")
        sync("after-fuzz")
        assert isinstance(replies[-1], P.Capabilities)
        codes = [r.code for r in replies if isinstance(r, P.Error)]
        assert len(codes) > 2000 and "internal" not in codes, sorted(set(codes))
        raw.close()
    finally:
        srv.stop()


# --- where the server listens ---------------------------------------------------------------------
@pytest.mark.parametrize("bind", [
    "tcp://127.0.0.1:0;0.0.0.0:0",              # ZeroMQ listens on the part after ';'
    ["tcp://127.0.0.1:0", "tcp://0.0.0.0:0"],   # several endpoints: every one is checked
    "tcp://lo:0", "tcp://eth0:0", "tcp://*:0", "tcp://[::]:0", "tcp://example.org:0",
    "ws://127.0.0.1:0", "udp://127.0.0.1:0", "tcp://127.0.0.1", "tcp://127.0.0.1:99999",
])
def test_bind_forms_that_may_reach_other_machines_are_refused_before_binding(bind):
    with pytest.raises(ValueError, match="^bind: "):
        Server({"preview": load_backend("preview")}, bind=bind)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_ipv6_loopback_and_several_endpoints_bind_and_are_reported():
    srv = Server({"preview": load_backend("preview")},
                 bind=["tcp://127.0.0.1:0", "tcp://[::1]:0"]).start()
    try:
        assert len(srv.addresses) == 2 and srv.addresses[1].startswith("tcp://[::1]:")
        with Client(srv.addresses[1], timeout=10) as c:
            assert c.hello().backends == ["preview"]
    finally:
        srv.stop()


def test_the_address_zeromq_really_bound_is_checked_too(monkeypatch):
    """Were a form to slip past the endpoint check, the check of the bound address stops it."""
    monkeypatch.setattr("server.security.check_bind", lambda bind, curve, insecure: [bind])
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0;0.0.0.0:0")
    with pytest.raises(ValueError, match=r"^bind: ZeroMQ listens on tcp://0\.0\.0\.0:\d+"):
        srv.start()
    srv._ctx.destroy(linger=0)


def test_cli_refuses_a_bad_or_taken_bind_before_loading_anything(monkeypatch, capsys):
    def no_loading(*a, **k):
        raise AssertionError("a backend was loaded before the bind was checked")

    monkeypatch.setattr("mimo.pipeline.backends.load_backend", no_loading)
    assert cli.main(["--bind", "tcp://127.0.0.1:0;0.0.0.0:0"]) == 2
    assert "SOURCE;ADDRESS" in capsys.readouterr().err
    assert cli.main(["--bind", "tcp://127.0.0.1:0", "--bind", "tcp://0.0.0.0:0"]) == 2
    assert "--insecure" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert cli.main(["--bind", f"tcp://127.0.0.1:{port}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already in use" in err and str(port) in err


def test_cli_status_and_version_usage_errors(capsys):
    assert cli.main(["status", "--connect", "localhost:5599"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean tcp://localhost:5599" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("mimo-server 0.")

