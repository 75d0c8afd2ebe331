"""mimo-server on a Ray cluster (server/cluster.py): a local Ray instance on the CPU with two worker
actors holding the preview backend and the MIMO backend on tiny weights, behind the real ZeroMQ
front door. One cluster for the module (Ray takes a while to start)."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from test_server import codes_request, expected_preview, png  # noqa: E402

from mimo.pipeline.character import prepare_character as decode_character  # noqa: E402
from server import protocol as P  # noqa: E402
from server.client import Client  # noqa: E402
from server.cluster import RayExecutor, cluster_status, format_rows  # noqa: E402
from server.core import Server  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tiny_weights):
    executor = RayExecutor(None, ["preview", "mimo"], weights=str(tiny_weights), workers=2,
                           local_cpus=4).start()
    srv = Server({"preview": None, "mimo": None}, bind="tcp://127.0.0.1:0", executor=executor,
                 heartbeat_timeout_s=30.0, stall_timeout_s=60.0, device_name=executor.device_name).start()
    yield srv, executor
    srv.stop()


def _client(srv) -> Client:
    return Client(srv.address, timeout=30.0, heartbeat_s=0.2)


def test_concurrent_jobs_of_several_clients_all_complete_in_order(cluster):
    srv, executor = cluster
    assert len(executor.slots) == 2 and all(s.host for s in executor.slots)
    results, errors = {}, []

    def one(k):
        try:
            with _client(srv) as c:
                assert c.hello().device.startswith("ray cluster local: 2 workers")
                for j in range(2):
                    req = codes_request(F=6 + k, W=24, H=16, seed=10 * k + j)
                    events = []
                    frames, _ = c.generate(req, on_event=events.append, credit=2)
                    results[(k, j)] = (req, frames, [e.index for e in events if isinstance(e, P.Frame)])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 6
    for req, frames, order in results.values():
        assert order == list(range(req.num_frames))  # every frame once, in order
        np.testing.assert_array_equal(frames, expected_preview(req))
    assert sum(s.jobs_done for s in executor.slots) >= 6
    assert all(s.jobs_done > 0 for s in executor.slots)  # both workers took jobs


def test_status_lists_the_workers(cluster):
    _, executor = cluster
    rows = executor.describe()
    assert [r["worker"] for r in rows] == ["mimo-worker-0", "mimo-worker-1"]
    assert all(r["alive"] and r["host"] and r["device"].startswith("cpu") for r in rows)
    lines = format_rows(rows)
    assert len(lines) == 2 and "idle" in lines[0]
    # what `mimo-server status --cluster ADDRESS` shows, from a second Ray driver (its own process)
    import multiprocessing as mp

    address = ray.get_runtime_context().gcs_address
    with mp.get_context("spawn").Pool(1) as pool:
        other = pool.apply(cluster_status, (address,))
    assert [r["worker"] for r in other] == ["mimo-worker-0", "mimo-worker-1"]
    assert all(r["alive"] for r in other)


def _slot_of(executor, job_id, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for s in executor.slots:
            if s.job_id == job_id:
                return s
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never started")


def test_cancel_reaches_the_actor_and_frees_it(cluster):
    srv, executor = cluster
    with _client(srv) as a:
        job = a.submit(codes_request(F=40, W=16, H=16), credit=1)  # stalls after one frame
        slot = _slot_of(executor, job.job_id)
        time.sleep(0.5)
        info = ray.get(executor.actor(slot).info.remote())
        assert info["job"] == job.job_id  # the actor is held by the stalled job
        a.cancel(job.job_id)
        events = list(a.events(job.job_id))
        assert isinstance(events[-1], P.Error) and events[-1].code == "cancelled"
        end = time.monotonic() + 10
        while ray.get(executor.actor(slot).info.remote())["job"] and time.monotonic() < end:
            time.sleep(0.05)
        assert ray.get(executor.actor(slot).info.remote())["job"] == ""
        frames, _ = a.generate(codes_request(F=3, W=16, H=16))  # and the cluster serves on
        assert len(frames) == 3


def test_a_lone_mimo_job_runs_split_over_the_idle_host_and_matches_one_process(cluster, tiny_weights):
    """Nothing queued behind it and both workers idle on one host: the job runs on both as one
    (mimo/pipeline/distributed.py over gloo); its frames equal a one-process run."""
    from mimo.pipeline.job import GenerationJob, JobEvents
    from mimo.pipeline.mimo_backend import MimoBackend

    srv, executor = cluster
    end = time.monotonic() + 120  # a worker killed by the test before is back (Ray restarted it)
    while not all(s.alive for s in executor.slots) and time.monotonic() < end:
        time.sleep(0.2)
    assert all(s.alive for s in executor.slots)
    rng = np.random.default_rng(5)
    F, S = 10, 64
    codes = np.zeros((F, S, S, 3), np.uint8)
    for i in range(F):
        codes[i, 14:50, 10 + 2 * i:30 + 2 * i] = rng.integers(30, 256, 3)
    scene = rng.integers(0, 256, (F, S, S, 3), dtype=np.uint8)
    req = P.GenerateRequest(character=png(40, 40), codes=codes, scene=scene, width=S, height=S, raw=True,
                            backend="mimo", steps=2, context=8, overlap=2, seed=3)
    with _client(srv) as c:
        frames, stats = c.generate(req, timeout=120)
    assert stats["workers"] == ["mimo-worker-0", "mimo-worker-1"]  # split over both
    # the same job in this process, on one process
    char = decode_character(req.character)
    job = GenerationJob(character=char, codes=codes, scene=scene, steps=2, context=8, overlap=2, seed=3,
                        raw=True)
    got = {}
    MimoBackend(str(tiny_weights), device="cpu", dtype="fp32").generate(
        job, JobEvents(frame=lambda i, im: got.__setitem__(i, im)))
    ref = np.stack([got[i] for i in range(F)])
    assert np.abs(frames.astype(int) - ref.astype(int)).max() <= 1  # thread counts may differ
    assert frames.std() > 0
    # the policy: split only when asked (nothing queued behind) and the host's workers are idle
    idle = list(executor.slots)
    assert [x.name for x in executor.choose("exact 64x64", idle, spread=True)] == [
        "mimo-worker-0", "mimo-worker-1"]
    assert len(executor.choose("exact 64x64", idle, spread=False)) == 1
    assert len(executor.choose("exact 64x64", idle[1:], spread=True)) == 1


def test_killing_a_worker_mid_job_fails_only_that_job(cluster):
    srv, executor = cluster
    with _client(srv) as a, _client(srv) as b:
        doomed = a.submit(codes_request(F=40, W=16, H=16), credit=1)  # holds its worker
        slot = _slot_of(executor, doomed.job_id)
        pid = ray.get(executor.actor(slot).info.remote())["pid"]
        req = codes_request(F=8, W=16, H=16, seed=3)
        other, done = {}, threading.Event()

        def run_b():
            try:
                other["frames"], _ = b.generate(req, credit=2)
            except Exception as exc:
                other["error"] = exc
            done.set()

        t = threading.Thread(target=run_b)
        t.start()
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        events = list(a.events(doomed.job_id, timeout=30))  # grants credit: reaches the dead actor
        end = events[-1]
        assert isinstance(end, P.Error) and end.code == "model_error"
        assert "died" in end.message and slot.name in end.message
        frames = [e.index for e in events if isinstance(e, P.Frame)]
        assert frames == list(range(len(frames))) and len(frames) < 40
        assert done.wait(60) and "error" not in other, other.get("error")
        np.testing.assert_array_equal(other["frames"], expected_preview(req))
        t.join()
        # Ray restarts the actor; the server keeps all workers and serves on
        for _ in range(3):
            frames, _ = a.generate(codes_request(F=2, W=16, H=16), timeout=60)
            assert len(frames) == 2
