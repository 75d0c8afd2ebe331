"""The ZeroMQ server: one I/O thread owns the ROUTER socket, worker threads run the jobs: one that
owns the GPU (the classic server), or one per Ray worker slot with ``--gpus``/``--cluster``
(server/workers.py, server/cluster.py).
(Where the server sits among the layers, and one job's path: docs/ARCHITECTURE.md.)

    client DEALER ──► ROUTER (I/O thread) ── queue (FIFO, per-client limit) ──► worker thread(s)
                         ▲                                                         │
                         └──────── inproc PULL ◄── PUSH: progress / frame / done ──┘

The I/O thread answers hello, status and heartbeats at once (also while a job runs), validates
submits, and tracks credit, cancels and heartbeats. It reads a message frame by frame and drops
it as soon as it exceeds ``max_message_bytes``, and it holds at most ``max_queued_bytes`` of
requests (``max_jobs`` jobs) across all clients. A client whose connection closes (a killed
process) has its jobs cancelled at once: the server probes the connections of clients with jobs
twice a second (a ROUTER with ``ROUTER_MANDATORY`` reports a peer that is gone); silence longer
than ``heartbeat_timeout_s`` is the fallback for peers whose connection never closes. A job
whose client grants no credit for ``stall_timeout_s`` is cancelled, so the worker moves on.

The worker runs one job at a time: it builds the synthesis input (:mod:`server.adapter`, which
maps the request to the library's types and calls :func:`mimo.pipeline.prepare.prepare_job`), calls
the backend with :class:`JobEvents` wired to the socket, and ends every job with exactly one
``done`` or ``error``. Frames are sent in order, exactly once, only while the job has credit (the
worker waits otherwise), so a slow client never makes the server buffer a whole job.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable

import msgpack
import numpy as np
import zmq

from mimo.errors import FieldError
from mimo.pipeline.job import Backend, GenerationJob, JobCancelled, JobEvents
from mimo.pipeline.presets import PRESETS

from . import protocol as P

log = logging.getLogger("mimo.server")
_STOP = b"__stop__"


@dataclasses.dataclass(eq=False)
class _Job:
    job_id: str
    client: bytes
    request: P.GenerateRequest
    credit: int
    submitted: float
    state: str = "queued"  # queued | running | finished
    cancelled: bool = False
    cancel_reason: str = ""
    frames_sent: int = 0
    nbytes: int = 0  # size of the submit message whose buffers the request holds


class Server:
    """``Server(backends={"preview": load_backend("preview")}).start()`` serves until ``stop()``.

    Args:
        backends: name -> loaded :class:`~mimo.pipeline.job.Backend` (kept loaded for every job).
        bind: ZeroMQ endpoint, or a list of them; ``tcp://127.0.0.1:0`` picks a free port (see
            :attr:`address`, :attr:`addresses`). Only loopback without ``curve`` or ``insecure``,
            checked before and after binding (:mod:`server.security`).
        limits: overrides of :data:`server.protocol.DEFAULT_LIMITS`; the job is checked against
            the same ones (``max_frames``, ``min_side``, ``max_side``), and capabilities report them.
        heartbeat_timeout_s: silence after which a client's jobs are cancelled.
        stall_timeout_s: time a running job may wait for its client's credit before it is
            cancelled (a client that stopped taking frames must not hold the worker).
        curve: ``(public, secret, authorized_clients_dir)`` from :mod:`server.security`, or None.
        insecure: allow a non-loopback ``bind`` without CurveZMQ.
        device: torch device for body posing and code rendering (None: the backends' default).
        device_name, weights: reported in ``capabilities`` (e.g. "cuda:0 NVIDIA H100", the folder).
        body_models: models clients may ask for (default: ``open`` plus installed SMPL files).
        build: request -> GenerationJob (default :func:`server.adapter.build_job` with this
            server's device and limits).
        warmup: called once in the worker thread before the first job (e.g. compiling the UNet);
            jobs submitted meanwhile wait in the queue; an exception is logged, not fatal.
        executor: where jobs run (:mod:`server.workers`): None runs ``backends`` in this process;
            a :class:`server.cluster.RayExecutor` runs them on its workers, one job each (then
            ``backends`` only names them: its values may be None).
    """

    def __init__(self, backends: dict[str, Backend], *, bind: str | list[str] = "tcp://127.0.0.1:5555",
                 limits: dict[str, int] | None = None, heartbeat_timeout_s: float = 10.0,
                 stall_timeout_s: float = 60.0,
                 curve: tuple[bytes, bytes, str] | None = None, insecure: bool = False,
                 device: str | None = None, device_name: str = "", weights: str = "",
                 body_models: list[str] | None = None,
                 build: Callable[[P.GenerateRequest], GenerationJob] | None = None,
                 warmup: Callable[[], None] | None = None, executor=None):
        from .security import check_bind

        if not backends:
            raise ValueError("backends: expected at least one loaded backend, got none")
        self.binds = check_bind(bind, curve is not None, insecure)
        self.insecure = insecure
        self.backends = dict(backends)
        self.limits = {**P.DEFAULT_LIMITS, **(limits or {})}
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self.stall_timeout_s = float(stall_timeout_s)
        self.curve, self.device, self.device_name, self.weights = curve, device, device_name, weights
        from .adapter import available_body_models, body_model_betas

        if body_models is None:
            body_models = available_body_models()
        self.body_betas = body_model_betas(body_models, device)
        self.body_models = [m for m in body_models if m in self.body_betas]
        if build is None:
            from .adapter import build_job

            build = lambda req: build_job(req, device, self.limits)  # noqa: E731
        self._build = build
        self._warmup, self._warming = warmup, warmup is not None
        self._ctx = zmq.Context()
        self._auth = None
        self._lock = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._jobs: dict[str, _Job] = {}
        self._running: dict[int, _Job] = {}  # slot index -> its job (server/workers.py)
        self._last_seen: dict[bytes, float] = {}
        self._stopping = False
        self._started = time.monotonic()
        self._jobs_done = 0
        self._inproc = f"inproc://mimo-worker-{uuid.uuid4().hex}"
        self._threads: list[threading.Thread] = []
        self.address, self.addresses = "", []
        from .workers import LocalExecutor

        self.executor = executor if executor is not None else LocalExecutor(self.backends, device_name)
        self._tls = threading.local()  # each worker thread's PUSH socket
        self._workers_left = 0

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Server:
        from .security import check_bound

        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.linger = 0
        # ZeroMQ refuses (and disconnects) a peer whose frame exceeds the limit before buffering it
        self._router.setsockopt(zmq.MAXMSGSIZE, self.limits["max_message_bytes"])
        # Sending to a peer whose connection closed raises EHOSTUNREACH: how a killed client is seen
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # Frames are bounded by the job's credit and the rest are small, so never drop a message
        # because a peer's queue is full: no send high-water mark.
        self._router.sndhwm = 0
        # IPv6 only when an endpoint is an IPv6 address (it makes IPv4 binds report mapped addresses)
        self._router.ipv6 = any(e.startswith("tcp://[") for e in self.binds)
        if self.curve is not None:
            from .security import start_authenticator

            public, secret, allowed = self.curve
            self._auth = start_authenticator(self._ctx, allowed)
            self._router.curve_server = True
            self._router.curve_publickey, self._router.curve_secretkey = public, secret
        try:
            for endpoint in self.binds:
                try:
                    self._router.bind(endpoint)
                except zmq.ZMQError as exc:
                    raise ValueError(f"bind: cannot listen on {endpoint}: {exc.strerror}") from None
                bound = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
                check_bound(bound, self.curve is not None, self.insecure)
                self.addresses.append(bound)
        except ValueError:
            self._router.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
            raise
        self.address = self.addresses[0]
        self._pull = self._ctx.socket(zmq.PULL)
        self._pull.linger = 0
        self._pull.bind(self._inproc)
        self._workers_left = len(self.executor.slots)
        self._threads = [threading.Thread(target=self._io_loop, name="mimo-server-io", daemon=True)] + [
            threading.Thread(target=self._worker_loop, args=(slot,), daemon=True,
                             name="mimo-server-worker" + (f"-{slot.index}" if slot.index else ""))
            for slot in self.executor.slots]
        for t in self._threads:
            t.start()
        log.info("mimo-server listening on %s (backends: %s)", self.address, ", ".join(self.backends))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            for job in self._jobs.values():
                job.cancelled = True
            self._lock.notify_all()
        for t in self._threads:
            t.join(timeout)
        if self._auth is not None:
            self._auth.stop()
        self.executor.stop()
        self._ctx.destroy(linger=0)

    def serve_forever(self) -> None:
        if not self._threads:
            self.start()
        try:
            while all(t.is_alive() for t in self._threads):
                time.sleep(0.2)
        except KeyboardInterrupt:
            log.info("interrupted; stopping")
        finally:
            self.stop()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- I/O thread -------------------------------------------------------------------------------
    def _io_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        next_check = next_probe = 0.0
        while True:
            ready = dict(poller.poll(50))
            if self._pull in ready:
                for _ in range(256):
                    try:
                        frames = self._pull.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    if frames[0].bytes == _STOP:
                        self._router.close(linger=0)
                        self._pull.close(linger=0)
                        return
                    self._route(frames)
            if self._router in ready:
                for _ in range(256):
                    try:
                        client, frames, refusal = self._recv_bounded()
                    except zmq.Again:
                        break
                    try:
                        if refusal is not None:
                            self._last_seen[client] = time.monotonic()
                            self._reply(client, refusal)
                        else:
                            self._handle(client, frames)
                    except Exception:  # never let one message kill the server
                        log.exception("internal error while handling a message")
                        self._reply(client, P.Error(code="internal", message="server error "
                                                    "while handling the message; see the server log"))
            now = time.monotonic()
            if now >= next_probe:
                next_probe = now + 0.5
                self._probe_clients()
            if now >= next_check:
                next_check = now + 0.1
                self._check_heartbeats(now)

    def _route(self, frames: list) -> None:
        """Send ``[client, *message]``; a client whose connection closed is marked gone."""
        try:
            self._router.send_multipart(frames, copy=False)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            client = frames[0] if isinstance(frames[0], bytes) else frames[0].bytes
            self._client_gone(client)

    def _reply(self, client: bytes, msg) -> None:
        self._route([client, *P.encode(msg)])

    def _client_gone(self, client: bytes) -> None:
        with self._lock:
            self._last_seen.pop(client, None)
            for job in list(self._jobs.values()):
                if job.client == client and not job.cancelled:
                    log.warning("client %s disconnected: cancelling job %s", client.hex(), job.job_id)
                    self._cancel_locked(job, "the client disconnected")

    def _probe_clients(self) -> None:
        """Send a heartbeat to every client with jobs; one whose connection closed is gone."""
        with self._lock:
            clients = {j.client for j in self._jobs.values() if not j.cancelled}
        for client in clients:
            self._reply(client, P.Heartbeat(time=time.time()))

    def _recv_bounded(self) -> tuple[bytes, list, P.Error | None]:
        """Receive one message frame by frame (raises ``zmq.Again`` when none is waiting). A
        message over ``max_message_bytes`` in total or with more frames than any message has is
        read to its end and dropped as it goes: ``(client, [], Error)``."""
        client = self._router.recv(zmq.NOBLOCK, copy=False).bytes
        frames: list = []
        size, refusal = 0, None
        while self._router.getsockopt(zmq.RCVMORE):
            frame = self._router.recv(copy=False)
            if refusal is not None:
                continue  # drain without keeping
            size += len(frame)
            if size > self.limits["max_message_bytes"]:
                refusal = P.Error(code="too_large", tag=_peek_tag(frames[0]) if frames else "",
                                  message=f"the message exceeds max_message_bytes "
                                          f"({self.limits['max_message_bytes']} bytes)")
            elif len(frames) > P.MAX_BUFFERS:
                refusal = P.Error(code="bad_message", message=f"more than {P.MAX_BUFFERS} buffers")
            if refusal is not None:
                frames.clear()
            else:
                frames.append(frame)
        if refusal is None and not frames:
            refusal = P.Error(code="bad_message", message="empty message (no header frame)")
        return client, frames, refusal

    def _handle(self, client: bytes, frames: list) -> None:
        self._last_seen[client] = time.monotonic()
        try:
            msg = P.decode(frames)
        except P.ProtocolError as exc:
            log.info("malformed message from %s: %s", client.hex(), exc)
            self._reply(client, dataclasses.replace(exc.to_error(), tag=_peek_tag(frames[0])))
            return
        if isinstance(msg, P.Hello):
            self._reply(client, self.capabilities())
        elif isinstance(msg, P.Heartbeat):
            self._reply(client, P.Heartbeat(time=time.time()))
        elif isinstance(msg, P.Status):
            self._reply(client, self.status(client))
        elif isinstance(msg, P.Submit):
            self._submit(client, msg, sum(len(f) for f in frames))
        elif isinstance(msg, P.Cancel):
            self._cancel(client, msg.job_id)
        elif isinstance(msg, P.Credit):
            self._credit(client, msg)
        else:
            self._reply(client, P.Error(code="unknown_type", field="type",
                                        message=f"{msg.TYPE!r} is not a client-to-server message"))

    def capabilities(self) -> P.Capabilities:
        from mimo.pipeline.backends import BACKENDS

        from . import __version__

        return P.Capabilities(server=__version__, backends=sorted(self.backends),
                              body_models=self.body_models, limits=dict(self.limits),
                              device=self.device_name, weights=self.weights,
                              heartbeat_timeout_s=self.heartbeat_timeout_s,
                              body_betas=dict(self.body_betas),
                              modes={name: p.summary for name, p in PRESETS.items()},
                              mode_defaults={name: {"steps": p.steps, "context": p.context, "overlap": p.overlap}
                                             for name, p in PRESETS.items()},
                              backend_summaries={name: BACKENDS[name].summary if name in BACKENDS else ""
                                                 for name in sorted(self.backends)})

    def status(self, client: bytes | None = None) -> P.StatusReply:
        """Queue and worker state as ``client`` may see it: its own jobs in full, the other
        clients' only as a count (``None``: the operator's view, every job)."""
        with self._lock:
            every = list(self._running.values()) + list(self._queue)
            mine = [j for j in every if client is None or j.client == client]
            rows = [{"job_id": j.job_id, "state": j.state, "frames_sent": j.frames_sent,
                     "num_frames": j.request.num_frames, "backend": j.request.backend} for j in mine]
            running = next((j for j in self._running.values() if j in mine), None)
            return P.StatusReply(queued=len(self._queue), running=running.job_id if running else "",
                                 jobs=rows, uptime_s=time.monotonic() - self._started,
                                 jobs_done=self._jobs_done, device=self.device_name,
                                 other_jobs=len(every) - len(mine))

    def _submit(self, client: bytes, msg: P.Submit, nbytes: int = 0) -> None:
        req = msg.request
        try:
            P.validate_request(req, self.limits, self.body_betas, modes=PRESETS)
            if not 1 <= msg.credit <= self.limits["max_credit"]:
                raise P.ProtocolError("invalid_field", f"expected 1..{self.limits['max_credit']}, "
                                      f"got {msg.credit}", "credit")
            if req.backend not in self.backends:
                raise P.ProtocolError("unknown_backend", f"expected one of {sorted(self.backends)}, "
                                      f"got {req.backend!r}", "backend")
            if req.codes is None and req.body_model not in self.body_models:
                raise P.ProtocolError("invalid_field", f"expected one of {self.body_models}, got "
                                      f"{req.body_model!r}", "body_model")
        except P.ProtocolError as exc:
            self._reply(client, dataclasses.replace(exc.to_error(), tag=msg.tag))
            return
        with self._lock:
            mine = sum(1 for j in self._jobs.values() if j.client == client)
            if mine >= self.limits["max_jobs_per_client"]:
                err = P.Error(code="queue_full", tag=msg.tag, message=f"{mine} jobs queued or running, "
                              f"limit {self.limits['max_jobs_per_client']} per client")
                self._reply(client, err)
                return
            held = sum(j.nbytes for j in self._jobs.values())
            if len(self._jobs) >= self.limits["max_jobs"] or held + nbytes > self.limits["max_queued_bytes"]:
                self._reply(client, P.Error(code="busy", tag=msg.tag, message=(
                    f"the server holds {len(self._jobs)} jobs ({held} bytes of requests; limits "
                    f"{self.limits['max_jobs']} jobs, {self.limits['max_queued_bytes']} bytes) and "
                    f"this request has {nbytes} bytes; retry when jobs finish")))
                return
            job = _Job(job_id=uuid.uuid4().hex[:16], client=client, request=req,
                       credit=msg.credit, submitted=time.monotonic(), nbytes=nbytes)
            self._jobs[job.job_id] = job
            self._queue.append(job)
            position = len(self._queue) - 1 + (1 if self._running or self._warming else 0)
            # reply before the worker can send anything for this job
            self._reply(client, P.Accepted(job_id=job.job_id, queue_position=position,
                                           num_frames=req.num_frames, tag=msg.tag))
            self._lock.notify_all()

    def _cancel(self, client: bytes, job_id: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.client != client:
                self._reply(client, P.Error(code="unknown_job", field="job_id", job_id=job_id,
                                            message=f"no job {job_id!r} of this client is queued or running"))
                return
            self._cancel_locked(job, "cancelled by the client")

    def _cancel_locked(self, job: _Job, why: str) -> None:
        job.cancelled = True
        job.cancel_reason = job.cancel_reason or why
        if job.state == "queued":
            self._queue.remove(job)
            job.state = "finished"
            del self._jobs[job.job_id]
            self._reply(job.client, P.Error(code="cancelled", message=why, job_id=job.job_id))
        # a running job: the worker sees the flag, stops the backend and sends the final error
        self._lock.notify_all()

    def _credit(self, client: bytes, msg: P.Credit) -> None:
        with self._lock:
            job = self._jobs.get(msg.job_id)
            if job is None or job.client != client:
                return  # credit for a finished job is normal (it raced the end); ignore
            if msg.frames < 0:
                self._reply(client, P.Error(code="invalid_field", field="frames", job_id=msg.job_id,
                                            message=f"expected frames >= 0, got {msg.frames}"))
                return
            job.credit = min(job.credit + msg.frames, self.limits["max_credit"])
            self._lock.notify_all()

    def _check_heartbeats(self, now: float) -> None:
        with self._lock:
            for job in list(self._jobs.values()):
                silent = now - self._last_seen.get(job.client, now)
                if silent > self.heartbeat_timeout_s and not job.cancelled:
                    log.warning("client %s silent for %.1f s: cancelling job %s", job.client.hex(),
                                silent, job.job_id)
                    self._cancel_locked(job, f"no heartbeat from the client for {silent:.1f} s")
            active = {j.client for j in self._jobs.values()}
            for client, seen in list(self._last_seen.items()):
                if client not in active and now - seen > max(60.0, self.heartbeat_timeout_s):
                    del self._last_seen[client]

    # -- worker threads (one per executor slot) ---------------------------------------------------
    def _worker_loop(self, slot) -> None:
        push = self._ctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(self._inproc)
        self._tls.push = push
        try:
            if self._warmup is not None and slot.index == 0:
                try:
                    self._warmup()
                except Exception:  # a failed warm-up costs speed, not the server
                    log.exception("warm-up failed; jobs will compile on first use")
                finally:
                    with self._lock:
                        self._warming = False
            while True:
                with self._lock:
                    while not self._stopping and not (plan := self._takes_next(slot)):
                        self._lock.wait(0.2)
                    if self._stopping:
                        break
                    job = self._queue.popleft()
                    job.state = "running"
                    for s in plan:  # this slot leads; a split job holds the others too
                        self._running[s.index], s.job_id = job, job.job_id
                try:
                    self._run(job, plan)
                finally:
                    with self._lock:
                        job.state = "finished"
                        for s in plan:
                            self._running.pop(s.index, None)
                            s.job_id = ""
                        self._jobs.pop(job.job_id, None)
                        self._jobs_done += 1
                        self._lock.notify_all()
        finally:
            with self._lock:
                self._workers_left -= 1
                last = self._workers_left == 0
            if last:  # the I/O thread stops after the last worker's messages
                push.send(_STOP)
            push.close(linger=-1)

    def _takes_next(self, slot) -> list:
        """The slots that run the queue's head job now when ``slot`` leads them, else []: the
        executor picks among the idle slots (preferring one that compiled the job's size; a MIMO
        job with nothing queued behind it may be split over several). Under the lock."""
        if not self._queue or slot.index in self._running:
            return []
        from .workers import compile_key

        req = self._queue[0].request
        idle = [s for s in self.executor.slots if s.index not in self._running]
        plan = self.executor.choose(compile_key(req.mode, req.width, req.height, req.roi_size, req.raw),
                                    idle, spread=req.backend == "mimo" and len(self._queue) == 1)
        return plan if plan and plan[0] is slot else []

    def _send(self, job: _Job, msg) -> None:
        self._tls.push.send_multipart([job.client, *P.encode(msg)], copy=False)

    def _send_blocking_previews(self, job: _Job, gen: GenerationJob, preview) -> None:
        """Before a slow backend starts: the motion codes over the scene as preview frames, so a
        client can show the shot while it waits."""
        for index, image in _preview_frames(gen):
            preview(index, image)

    def _run(self, job: _Job, slots: list) -> None:
        req, t0 = job.request, time.monotonic()
        queue_s = t0 - job.submitted
        next_index = itertools.count()
        stage_clock: dict[str, tuple[float, int]] = {}

        def progress(stage: str, step: int, total: int) -> None:
            now = time.monotonic()
            start, first = stage_clock.setdefault(stage, (now, step))
            eta = (now - start) / (step - first) * (total - step) if step > first else -1.0
            self._send(job, P.Progress(job_id=job.job_id, stage=str(stage), step=int(step),
                                       total=int(total), eta_s=float(eta)))

        def frame(index: int, image: np.ndarray) -> None:
            expected = next(next_index)
            if index != expected:
                raise RuntimeError(f"backend sent frame {index}, expected {expected} (in order, once)")
            if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                    and image.shape[2] == 3):
                raise RuntimeError(f"backend frame {index}: expected (H, W, 3) uint8, got "
                                   f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
            with self._lock:
                waiting_since = time.monotonic()
                while job.credit <= 0 and not job.cancelled:
                    if time.monotonic() - waiting_since > self.stall_timeout_s:
                        log.warning("job %s: no credit for %.0f s; cancelling", job.job_id,
                                    self.stall_timeout_s)
                        self._cancel_locked(job, f"the client took no frames for "
                                                 f"{self.stall_timeout_s:g} s (no credit granted)")
                        break
                    self._lock.wait(0.1)
                if job.cancelled:
                    raise JobCancelled()
                job.credit -= 1
            self._send(job, P.Frame(job_id=job.job_id, index=int(index), image=image))
            job.frames_sent += 1

        def preview(index: int, image: np.ndarray) -> None:
            # optional and unmetered by credit, so only while the client keeps up; a malformed
            # preview is dropped rather than failing the job
            if req.preview and job.credit > 0:
                image = np.asarray(image)
                if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
                    self._send(job, P.Preview(job_id=job.job_id, index=int(index), image=image))

        events = JobEvents(progress=progress, frame=frame, preview=preview,
                           cancelled=lambda: job.cancelled or self._stopping)
        if _cuda_in_use():
            import torch

            torch.cuda.reset_peak_memory_stats()  # peak of this job: build + backend
        try:
            events.check_cancelled()
            progress("build", 0, 1)
            gen_job = self._build(req)
            progress("build", 1, 1)
            build_s = time.monotonic() - t0
            if req.preview and req.backend != "preview":
                self._send_blocking_previews(job, gen_job, preview)
            stats = self.executor.run(slots, req.backend, gen_job, events, job.job_id)
            if job.frames_sent != gen_job.num_frames:
                raise RuntimeError(f"backend sent {job.frames_sent} of {gen_job.num_frames} frames")
            stats = {**_plain(stats or {}), "queue_s": queue_s, "build_s": build_s,
                     "total_s": time.monotonic() - t0}
            if _cuda_in_use():
                import torch

                stats["server_peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated())
            self._send(job, P.Done(job_id=job.job_id, num_frames=job.frames_sent, stats=stats))
            log.info("job %s done: %d frames in %.2f s", job.job_id, job.frames_sent, stats["total_s"])
        except JobCancelled:
            why = "server shutting down" if self._stopping else job.cancel_reason or "cancelled"
            self._send(job, P.Error(code="cancelled", message=why, job_id=job.job_id))
        except Exception as exc:
            self._send(job, _job_error(job.job_id, exc))


PREVIEW_SIDE = 256


def _preview_frames(gen: GenerationJob):
    """The weight-free preview composite of every frame, subsampled to at most PREVIEW_SIDE."""
    from mimo.pipeline.backends import composite_preview

    step = max(1, -(-max(gen.height, gen.width) // PREVIEW_SIDE))
    pick = lambda a, i: None if a is None else a[i, ::step, ::step]  # noqa: E731
    for i in range(gen.num_frames):
        yield i, composite_preview(pick(gen.codes, i), pick(gen.code_mask, i), pick(gen.scene, i),
                                   pick(gen.occlusion, i))


def _cuda_in_use() -> bool:
    """True when torch is loaded and has initialised CUDA (never initialises it itself)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()


def _peek_tag(header_frame) -> str:
    """The ``tag`` of a message we will not decode (so a refusal still reaches its submit)."""
    try:
        header = msgpack.unpackb(header_frame.buffer, raw=False)
        tag = header.get("tag", "") if isinstance(header, dict) else ""
        return tag if isinstance(tag, str) else ""
    except Exception:
        return ""


def _job_error(job_id: str, exc: Exception) -> P.Error:
    if _is_oom(exc):
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:
            pass
        log.warning("job %s: out of memory: %s", job_id, exc)
        return P.Error(code="oom", message=f"out of memory: {exc}"[:2000], job_id=job_id)
    if isinstance(exc, P.ProtocolError):
        return exc.to_error(job_id)
    if isinstance(exc, FieldError):
        # the adapter names the request field at fault (``bodies[0].transl``); any other
        # ValueError comes from deeper down and is reported as the backend's failure
        return P.Error(code="invalid_field", message=exc.message[:2000], field=exc.field, job_id=job_id)
    log.exception("job %s failed", job_id, exc_info=exc)
    return P.Error(code="model_error", message=f"{type(exc).__name__}: {exc}"[:2000], job_id=job_id)


def _is_oom(exc: Exception) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:
        pass
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def _plain(v):
    """Backend stats -> msgpack-safe values (numbers, strings, lists, maps)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)
