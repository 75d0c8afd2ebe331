"""mimo-server over real loopback sockets (free ports): jobs, back-pressure, cancel, vanished
clients, failing backends, concurrency and malformed input."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import zlib

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mimo.pipeline.backends import load_backend
from mimo.pipeline.job import Backend
from server import protocol as P
from server.client import Client, MimoClientError
from server.core import Server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png(w=12, h=20, color=(200, 30, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def codes_request(F=4, W=32, H=16, seed=0, scene=True, **kw) -> P.GenerateRequest:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8)
    codes[:, :, : W // 2] = 0  # left half: background (no body)
    return P.GenerateRequest(character=png(), codes=codes, width=W, height=H,
                             scene=rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8) if scene else None,
                             **kw)


def expected_preview(req: P.GenerateRequest) -> np.ndarray:
    """Independent reference for the preview backend without occlusion: body codes where any code
    channel is non-zero, the scene (white when absent) elsewhere."""
    body = np.any(req.codes != 0, axis=-1, keepdims=True)
    bg = req.scene if req.scene is not None else np.full_like(req.codes, 255)
    return np.where(body, req.codes, bg)


@pytest.fixture(scope="module")
def server():
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0",
                 heartbeat_timeout_s=1.0, device_name="cpu").start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    c = Client(server.address, timeout=5.0, heartbeat_s=0.2)
    yield c
    c.close()


def wait_idle(client: Client, timeout: float = 5.0) -> P.StatusReply:
    end = time.monotonic() + timeout
    while True:
        st_ = client.status()
        if not st_.jobs or time.monotonic() > end:
            return st_
        time.sleep(0.05)


# --- jobs ---------------------------------------------------------------------------------------
def test_hello_reports_capabilities(client):
    caps = client.hello()
    assert caps.protocol_version == list(P.PROTOCOL_VERSION)
    assert caps.backends == ["preview"] and caps.device == "cpu"
    assert caps.limits["max_frames"] == P.DEFAULT_LIMITS["max_frames"]


def test_modes_are_the_servers_and_nil_settings_are_the_modes(client):
    from mimo.pipeline.presets import PRESETS

    caps = client.hello()
    assert caps.modes == {m: p.summary for m, p in PRESETS.items()}
    with pytest.raises(P.ProtocolError) as e:  # the client checks against what the server reported
        client.submit(codes_request(mode="warp"))
    assert e.value.field == "mode"
    with pytest.raises(MimoClientError) as e:  # and the server itself
        client.submit(codes_request(mode="warp"), validate=False)
    assert (e.value.error.code, e.value.error.field) == ("invalid_field", "mode")
    req = codes_request(F=2, mode="fast")  # context, overlap, steps, roi_size: nil
    frames, stats = client.generate(req)
    np.testing.assert_array_equal(frames, expected_preview(req))


def test_full_preview_job_streams_every_frame_in_order(client):
    req = codes_request(F=5)
    events = []
    frames, stats = client.generate(req, on_event=events.append, credit=2)
    np.testing.assert_array_equal(frames, expected_preview(req))
    idx = [e.index for e in events if isinstance(e, P.Frame)]
    assert idx == list(range(5))
    assert isinstance(events[-1], P.Done) and events[-1].num_frames == 5
    stages = {e.stage for e in events if isinstance(e, P.Progress)}
    assert "build" in stages and "composite" in stages
    assert stats["frames"] == 5 and stats["total_s"] >= stats["build_s"] >= 0


def test_job_from_bodies_and_camera_renders_the_open_body(client):
    F, W, H = 2, 32, 32
    K = np.tile(np.array([[30.0, 0, 16], [0, 30, 16], [0, 0, 1]]), (F, 1, 1))
    R = np.tile(np.diag([1.0, -1, -1]), (F, 1, 1))  # looking at the body's front from +Z
    t = np.tile([0, -0.3, 3.0], (F, 1))
    body = P.BodyParams(global_orient=np.zeros((F, 3)), body_pose=np.zeros((F, 21, 3)),
                        transl=np.array([[0, 0, 0], [0.5, 0, 0]]), betas=np.zeros(6))
    # the camera was set up for a 64x64 image: the server rescales K to the 32x32 output
    K64 = K.copy()
    K64[:, :2] *= 2
    req = P.GenerateRequest(character=png(), bodies=[body], body_model="open", width=W, height=H,
                            camera=P.CameraParams(K=K64, R=R, t=t, width=64, height=64))
    frames, _ = client.generate(req, timeout=60)
    assert frames.shape == (F, H, W, 3)
    body_px = np.any(frames != 255, axis=-1)  # white background, coloured body
    assert 0.02 < body_px[0].mean() < 0.5
    cols0, cols1 = (np.nonzero(body_px[i].any(0))[0] for i in range(2))
    # moving the body 0.5 m to world +X moves it 30 px * 0.5 m / 3 m = 5 px right in the image
    shift = (cols1.min() + cols1.max() - cols0.min() - cols0.max()) / 2
    assert abs(shift - 5.0) <= 1.0, shift


def test_backpressure_sends_no_more_frames_than_credit(server, client):
    job = client.submit(codes_request(F=6), credit=2)

    def row():
        return next(r for r in client.status().jobs if r["job_id"] == job.job_id)

    deadline = time.monotonic() + 30  # wait for the credited frames, however slow the machine
    while row()["frames_sent"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.4)  # then give the server ample time to run ahead if it ignored credit
    assert row()["state"] == "running" and row()["frames_sent"] == 2
    got = [e.index for e in client.events(job.job_id) if isinstance(e, P.Frame)]
    assert got == list(range(6))


def test_cancel_mid_job_then_the_server_serves_the_next(client):
    job = client.submit(codes_request(F=6), credit=1)
    it = client.events(job.job_id)
    first = next(e for e in it if isinstance(e, P.Frame))
    assert first.index == 0
    client.cancel(job.job_id)
    rest = list(it)
    assert isinstance(rest[-1], P.Error) and rest[-1].code == "cancelled"
    assert sum(isinstance(e, P.Frame) for e in rest) <= 1  # at most the one granted by the credit
    frames, _ = client.generate(codes_request(F=2))
    assert frames.shape[0] == 2


def test_cancel_a_queued_job(client):
    first = client.submit(codes_request(F=3), credit=1)  # blocks the worker on credit
    second = client.submit(codes_request(F=3))
    assert second.queue_position == 1
    client.cancel(second.job_id)
    events = list(client.events(second.job_id))
    assert [type(e) for e in events] == [P.Error] and events[0].code == "cancelled"
    frames = [e for e in client.events(first.job_id) if isinstance(e, P.Frame)]
    assert len(frames) == 3


def test_unknown_job_cancel_is_a_typed_error(client):
    client.cancel("nope")
    events = list(client.events("nope"))
    assert events[0].code == "unknown_job" and events[0].field == "job_id"


def test_invalid_requests_get_typed_errors_naming_the_field(client):
    req = codes_request()
    req.steps = 0
    with pytest.raises(MimoClientError) as e:
        client.submit(req, validate=False)
    assert e.value.error.code == "invalid_field" and e.value.error.field == "steps"
    req = codes_request(backend="mimo")
    with pytest.raises(MimoClientError) as e:
        client.submit(req)
    assert e.value.error.code == "unknown_backend" and e.value.error.field == "backend"
    caps = client.hello()
    missing = [m for m in P.BODY_MODELS if m not in caps.body_models]
    assert "open" in caps.body_models
    if missing:  # licensed SMPL files are not installed here: refused at submit, by name
        bad = P.GenerateRequest(character=png(), body_model=missing[0], width=16, height=16,
                                bodies=[P.BodyParams(global_orient=np.zeros((1, 3)),
                                                     body_pose=np.zeros((1, 23 if missing[0] == "smpl" else 21, 3)),
                                                     transl=np.zeros((1, 3)), betas=np.zeros(10))],
                                camera=P.CameraParams(K=np.eye(3)[None], R=np.eye(3)[None],
                                                     t=np.zeros((1, 3)), width=16, height=16))
        with pytest.raises(MimoClientError) as e:
            client.submit(bad)
        assert e.value.error.field == "body_model"
    req = codes_request()
    req.character = b"\x89PNG\r\n\x1a\n" + b"not really a png"
    job = client.submit(req)
    last = list(client.events(job.job_id))[-1]
    assert last.code == "invalid_field" and last.field == "character"


def test_per_client_queue_limit():
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0",
                 limits={"max_jobs_per_client": 2}).start()
    try:
        with Client(srv.address, timeout=5) as c:
            a = c.submit(codes_request(F=2), credit=1)
            c.submit(codes_request(F=2))
            with pytest.raises(MimoClientError) as e:
                c.submit(codes_request(F=2))
            assert e.value.error.code == "queue_full"
            with Client(srv.address, timeout=5) as other:  # the limit is per client
                other.submit(codes_request(F=2))
            c.cancel(a.job_id)
    finally:
        srv.stop()


class _FailingBackend(Backend):
    """Fails the way a model can: an exception mid-job, after some frames."""

    name = "failing"

    def __init__(self, exc):
        self.exc = exc

    def generate(self, job, events):
        events.frame(0, job.codes[0])
        raise self.exc


class _OutOfOrderBackend(Backend):
    name = "disorder"

    def generate(self, job, events):
        events.frame(1, job.codes[1])
        return {}


def test_model_errors_and_oom_fail_only_that_job():
    srv = Server({"preview": load_backend("preview"),
                  "boom": _FailingBackend(RuntimeError("weights exploded")),
                  "oom": _FailingBackend(MemoryError("CUDA out of memory. Tried to allocate 2 GiB")),
                  "disorder": _OutOfOrderBackend()}, bind="tcp://127.0.0.1:0").start()
    try:
        with Client(srv.address, timeout=5) as c:
            for backend, code in (("boom", "model_error"), ("oom", "oom"), ("disorder", "model_error")):
                job = c.submit(codes_request(F=3, backend=backend))
                last = list(c.events(job.job_id))[-1]
                assert isinstance(last, P.Error) and last.code == code, last
            assert "expected 0" in last.message
            frames, _ = c.generate(codes_request(F=2))
            assert frames.shape[0] == 2
    finally:
        srv.stop()


def test_eight_clients_five_jobs_each_get_every_frame_once_in_order(server):
    errors: list[str] = []

    def run(k: int) -> None:
        with Client(server.address, timeout=20, heartbeat_s=0.2) as c:
            jobs = []
            for j in range(5):
                req = codes_request(F=3 + (k + j) % 3, W=16, H=8, seed=100 * k + j, scene=j % 2 == 0)
                want = [zlib.crc32(f.tobytes()) for f in expected_preview(req)]
                jobs.append((c.submit(req, credit=1 + j % 3), want))
            for acc, want in jobs:
                got = [(e.index, zlib.crc32(e.image.tobytes())) for e in c.events(acc.job_id)
                       if isinstance(e, P.Frame)]
                if got != list(enumerate(want)):
                    errors.append(f"client {k} job {acc.job_id}: {got} != {want}")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


# --- malformed input ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def raw(server):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(server.address)
    yield s
    s.close()


def _drain(sock, wait_ms=0):
    out = []
    while sock.poll(wait_ms):
        out.append(P.decode(sock.recv_multipart()))
        wait_ms = 0
    return out


def test_malformed_message_gets_an_error_reply(raw):
    _drain(raw)
    raw.send_multipart([b"\xc1 not msgpack"])
    (reply,) = _drain(raw, 2000)
    assert isinstance(reply, P.Error) and reply.code == "bad_message"
    raw.send_multipart(P.encode(P.Frame(job_id="x", index=0, image=np.zeros((1, 1, 3), np.uint8))))
    (reply,) = _drain(raw, 2000)
    assert reply.code == "unknown_type"


def test_too_large_message_is_refused():
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0",
                 limits={"max_message_bytes": 4096}).start()
    try:
        with Client(srv.address, timeout=5) as c:
            with pytest.raises(MimoClientError) as e:
                c.submit(codes_request(F=3, W=16, H=16))  # 3 buffers of <= 2.3 KB, > 4 KB in all
            assert e.value.error.code == "too_large"
            assert c.hello().limits["max_message_bytes"] == 4096
    finally:
        srv.stop()


def _nested(children):
    """Lists and dicts of ``children`` (a named function, not a lambda: describing a lambda makes
    hypothesis walk sys.modules, which the server's threads may change at that moment)."""
    return st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_server_fuzz_random_and_truncated_frames_still_answers_hello(raw, data):
    _drain(raw)
    kind = data.draw(st.sampled_from(["random", "truncated", "header"]))
    if kind == "random":
        frames = data.draw(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
    elif kind == "truncated":
        frames = [bytes(f) for f in P.encode(P.Submit(request=codes_request(F=2, W=8, H=8)))]
        i = data.draw(st.integers(0, len(frames) - 1))
        frames[i] = frames[i][: data.draw(st.integers(0, len(frames[i])))]
        frames = frames[: data.draw(st.integers(1, len(frames)))]
    else:
        header = data.draw(st.dictionaries(st.sampled_from(["v", "type", "job_id", "request", "frames",
                                                            "credit", "image", "$buf"]),
                                           st.recursive(st.none() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=5)
                                                        | st.binary(max_size=5), _nested, max_leaves=6)))
        if data.draw(st.booleans()):
            header["v"] = list(P.PROTOCOL_VERSION)
            header["type"] = data.draw(st.sampled_from(sorted(P.MESSAGE_TYPES)))
        frames = [msgpack.packb(header)]
    raw.send_multipart(frames)
    raw.send_multipart(P.encode(P.Hello(client="fuzz")))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not raw.poll(int((deadline - time.monotonic()) * 1000) + 1):
            break
        if isinstance(P.decode(raw.recv_multipart()), P.Capabilities):
            return
    pytest.fail("server did not answer hello after a malformed message")


def test_job_with_tiny_mimo_weights_matches_a_direct_backend_call(tmp_path):
    """The server's frames equal the backend's own output for the same job (same seed, CPU)."""
    from mimo.models.tiny import make_tiny
    from mimo.pipeline.job import JobEvents
    from server.adapter import build_job

    make_tiny(tmp_path / "w")
    mimo = load_backend("mimo", weights=str(tmp_path / "w"), device="cpu")
    req = codes_request(F=2, W=32, H=32, scene=False, backend="mimo", steps=2, context=2, overlap=0,
                        raw=True, seed=7, preview=True)
    direct: list[np.ndarray] = []
    mimo.generate(build_job(req), JobEvents(frame=lambda i, f: direct.append(f.copy())))
    srv = Server({"preview": load_backend("preview"), "mimo": mimo}, bind="tcp://127.0.0.1:0").start()
    try:
        with Client(srv.address, timeout=60) as c:
            events = []
            frames, stats = c.generate(req, on_event=events.append)
    finally:
        srv.stop()
    np.testing.assert_array_equal(frames, np.stack(direct))
    denoise = [e.step for e in events if isinstance(e, P.Progress) and e.stage == "denoise"]
    assert denoise == [1, 2]
    assert stats["backend"] == "mimo"
    previews = [e for e in events if isinstance(e, P.Preview)]
    assert [p.index for p in previews] == [0, 1]  # codes over white while the model works
    np.testing.assert_array_equal(np.stack([p.image for p in previews]), expected_preview(req))
    assert events.index(previews[-1]) < min(i for i, e in enumerate(events) if isinstance(e, P.Frame))


def test_client_iterates_in_a_background_thread_and_cancels_from_another(server):
    """The add-on's pattern: a worker thread owns the iteration, the UI thread presses Cancel."""
    client = Client(server.address, timeout=5.0, heartbeat_s=0.2)
    job = client.submit(codes_request(F=50), credit=1)
    seen: list = []
    first_frame = threading.Event()

    def consume() -> None:
        for e in client.events(job.job_id):
            seen.append(e)
            if isinstance(e, P.Frame):
                first_frame.set()
                time.sleep(0.05)  # a slow consumer

    t = threading.Thread(target=consume)
    t.start()
    assert first_frame.wait(5)
    client.cancel(job.job_id)
    t.join(10)
    client.close()
    assert not t.is_alive()
    assert isinstance(seen[-1], P.Error) and seen[-1].code == "cancelled"
    idx = [e.index for e in seen if isinstance(e, P.Frame)]
    assert idx == list(range(len(idx))) and len(idx) < 50


def test_server_shutdown_ends_running_jobs_and_a_killed_server_is_reported():
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0").start()
    with Client(srv.address, timeout=2.0, heartbeat_s=0.2) as c:
        job = c.submit(codes_request(F=4), credit=1)
        it = c.events(job.job_id)
        next(e for e in it if isinstance(e, P.Frame))
        srv.stop()
        last = list(it)[-1]
        assert last.code == "cancelled" and "shutting down" in last.message

    exe = os.path.join(os.path.dirname(sys.executable), "mimo-server")
    proc = subprocess.Popen([exe, "--bind", "tcp://127.0.0.1:0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        address = line.split("listening on ")[1].strip()
        with Client(address, timeout=1.0, heartbeat_s=0.2) as c:
            job = c.submit(codes_request(F=4), credit=1)
            it = c.events(job.job_id)
            next(e for e in it if isinstance(e, P.Frame))
            proc.kill()  # no goodbye: the client must notice the silence by itself
            with pytest.raises(MimoClientError, match="no answer"):
                list(it)
    finally:
        proc.kill()
        proc.wait(30)


@pytest.mark.gpu
def test_gpu_body_codes_match_cpu_and_real_oom_fails_only_that_job():
    import torch

    class _Greedy(Backend):
        name = "greedy"

        def generate(self, job, events):
            torch.empty(1 << 50, dtype=torch.uint8, device="cuda")  # 1 PiB: a real CUDA OOM
            return {}

    F = 2
    K = np.tile(np.array([[60.0, 0, 32], [0, 60, 32], [0, 0, 1]]), (F, 1, 1))
    body = P.BodyParams(global_orient=np.zeros((F, 3)), body_pose=np.full((F, 21, 3), 0.1),
                        transl=np.zeros((F, 3)), betas=np.zeros(6))
    req = P.GenerateRequest(character=png(), bodies=[body], width=64, height=64,
                            camera=P.CameraParams(K=K, R=np.tile(np.diag([1.0, -1, -1]), (F, 1, 1)),
                                                 t=np.tile([0, -0.3, 3.0], (F, 1)), width=64, height=64))
    out = {}
    for device in ("cpu", "cuda"):
        srv = Server({"preview": load_backend("preview"), "greedy": _Greedy()},
                     bind="tcp://127.0.0.1:0", device=device).start()
        try:
            with Client(srv.address, timeout=60) as c:
                out[device], stats = c.generate(req)
                if device == "cuda":
                    assert stats["server_peak_cuda_bytes"] > 0  # the codes were rendered on the GPU
                    greedy = codes_request(backend="greedy")
                    last = list(c.events(c.submit(greedy).job_id))[-1]
                    assert last.code == "oom", last
                    again, _ = c.generate(req)
                    np.testing.assert_array_equal(again, out["cuda"])
        finally:
            srv.stop()
    differ = np.any(out["cpu"] != out["cuda"], axis=-1).mean()
    assert differ < 0.01, differ  # only edge pixels may differ between devices


def test_blocking_previews_are_at_most_256_pixels():
    from mimo.pipeline.job import GenerationJob
    from server.jobs import _preview_frames

    codes = np.zeros((2, 520, 600, 3), np.uint8)
    codes[:, 100:200, 300:330] = 77
    gen = GenerationJob(character=np.zeros((4, 4, 3), np.uint8), codes=codes)
    out = list(_preview_frames(gen))
    assert [i for i, _ in out] == [0, 1]
    img = out[0][1]
    assert img.shape == (174, 200, 3)  # every 3rd pixel of 520 x 600
    np.testing.assert_array_equal(img, np.where(codes[0, ::3, ::3] != 0, 77, 255))


def test_a_submit_the_client_gave_up_on_is_cancelled_when_it_is_accepted(server):
    """A submit that times out client-side (slow upload) must not hold the worker later."""
    with Client(server.address, timeout=5.0, heartbeat_s=0.2) as c:
        accepted = c.submit(codes_request(F=3), credit=1)  # blocks the worker on credit
        with pytest.raises(MimoClientError):
            c.submit(codes_request(F=3), credit=1, timeout=0.0)  # gives up before any answer
        frames = [e for e in c.events(accepted.job_id) if isinstance(e, P.Frame)]
        assert len(frames) == 3  # draining this job also received the late Accepted
        st_ = wait_idle(c, timeout=3.0)
        assert not st_.jobs, st_.jobs


def _write_synthetic_smplh(path) -> None:
    """A tiny body in the SMPL-H .npz layout (random, but the real keys and shapes)."""
    from mimo.body.joints import SMPLH_PARENTS

    g = np.random.default_rng(3)
    J, V = len(SMPLH_PARENTS), 80
    joints = np.zeros((J, 3))
    for j, p in enumerate(SMPLH_PARENTS[1:], start=1):
        joints[j] = joints[p] + g.normal(size=3) * 0.1
    owner = g.integers(0, J, size=V)
    v = joints[owner] + g.normal(size=(V, 3)) * 0.05
    weights = np.zeros((V, J))
    weights[np.arange(V), owner] = 1.0
    jreg = np.zeros((J, V))
    jreg[owner, np.arange(V)] = 1.0
    jreg[jreg.sum(1) == 0, 0] = 1.0
    jreg /= jreg.sum(1, keepdims=True)
    np.savez(path, v_template=v, f=g.integers(0, V, size=(160, 3)).astype(np.uint32),
             shapedirs=g.normal(size=(V, 3, 10)) * 0.01, posedirs=g.normal(size=(V, 3, 9 * (J - 1))) * 0.001,
             J_regressor=jreg, weights=weights, J=jreg @ v,
             kintree_table=np.array([[4294967295] + SMPLH_PARENTS[1:], list(range(J))], dtype=np.int64),
             **{f"hands_components{s}": np.eye(45) for s in "lr"}, **{f"hands_mean{s}": np.zeros(45) for s in "lr"})


def test_installed_smplh_file_is_offered_and_used(tmp_path, monkeypatch):
    (tmp_path / "smplh").mkdir()
    _write_synthetic_smplh(tmp_path / "smplh" / "SMPLH_NEUTRAL.npz")
    monkeypatch.setenv("MIMO_BODY_MODELS", str(tmp_path))
    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0").start()
    try:
        with Client(srv.address, timeout=30) as c:
            assert "smplh" in c.hello().body_models
            F = 2
            body = P.BodyParams(global_orient=np.zeros((F, 3)), body_pose=np.zeros((F, 21, 3)),
                                transl=np.zeros((F, 3)), betas=np.zeros(10),
                                left_hand_pose=np.zeros((F, 15, 3)), right_hand_pose=np.zeros((F, 15, 3)))
            K = np.tile(np.array([[40.0, 0, 16], [0, 40, 16], [0, 0, 1]]), (F, 1, 1))
            cam = P.CameraParams(K=K, R=np.tile(np.diag([1.0, -1, -1]), (F, 1, 1)),
                                t=np.tile([0, 0, 2.0], (F, 1)), width=32, height=32)
            req = P.GenerateRequest(character=png(), bodies=[body], body_model="smplh", camera=cam,
                                    width=32, height=32)
            frames, _ = c.generate(req)
            assert frames.shape == (F, 32, 32, 3)
            assert np.any(frames != 255)  # the body is drawn over the white background
    finally:
        srv.stop()


def test_warmup_runs_in_the_worker_before_jobs_and_a_failed_one_is_not_fatal():
    """Jobs sent while the warm-up runs queue behind it (position 1) and then run; a warm-up that
    raises is logged and the server serves on."""
    release, seen = threading.Event(), []

    def warmup():
        seen.append(threading.current_thread().name)
        assert release.wait(10)

    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0", warmup=warmup).start()
    try:
        with Client(srv.address, timeout=10) as c:
            job = c.submit(codes_request(F=2), credit=8)
            assert job.queue_position == 1
            time.sleep(0.3)
            assert [j["state"] for j in c.status().jobs] == ["queued"]
            release.set()
            frames = [m for m in c.events(job.job_id) if isinstance(m, P.Frame)]
            assert len(frames) == 2
    finally:
        srv.stop()
    assert seen == ["mimo-server-worker"]

    def broken():
        raise RuntimeError("compiler missing")

    srv = Server({"preview": load_backend("preview")}, bind="tcp://127.0.0.1:0", warmup=broken).start()
    try:
        with Client(srv.address, timeout=10) as c:
            frames, _ = c.generate(codes_request(F=2))
        assert frames.shape[0] == 2
    finally:
        srv.stop()


@pytest.mark.parametrize("argv, match", [
    (["--warmup"], "needs the mimo backend"),
    (["--weights", "nowhere", "--warmup", "60"], "multiple of 8"),
    (["--device", "banana"], "--device: expected cpu, cuda or cuda:N"),
    (["--weights", "nowhere", "--device", "cpu", "--compile", "on"], "--compile: --compile on cannot run here"),
    (["--low-memory"], "is for the mimo backend"),
])
def test_server_cli_refuses_a_bad_warmup_before_loading_weights(argv, match, capsys):
    from server.cli import main

    assert main(["serve", "--bind", "tcp://127.0.0.1:0"] + argv) == 2
    err = capsys.readouterr().err
    assert match in err and "loaded" not in err
