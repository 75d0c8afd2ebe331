"""The ZeroMQ server: one I/O thread owns the ROUTER socket, worker threads run the jobs: one that
owns the GPU (the classic server), or one per Ray worker slot with ``--gpus``/``--cluster``
(server/workers.py, server/cluster.py).
(Where the server sits among the layers, and one job's path: docs/ARCHITECTURE.md.)

    client DEALER ──► ROUTER (I/O thread) ── queue (FIFO, per-client limit) ──► worker thread(s)
                         ▲                                                         │
                         └──────── inproc PULL ◄── PUSH: progress / frame / done ──┘

:class:`Server` is put together from three files, one per thread:

* this one: the state both kinds of thread share (created in ``Server.__init__``, guarded by
  ``_lock``), starting and stopping, and what the server reports (``capabilities``, ``status``);
* server/connections.py (:class:`~server.connections.IOThread`): the I/O thread. It receives
  messages within the size limits, answers hello, status and heartbeats at once (also while a job
  runs), admits submits to the queue (FIFO, per-client and total limits), applies credit and
  cancels, and cancels the jobs of clients that vanished or fell silent;
* server/jobs.py (:class:`~server.jobs.WorkerThreads`): the worker threads. Each runs one job at a
  time: builds it (:mod:`server.adapter`), calls the backend with ``JobEvents`` wired to the
  socket, sends frames in order and only while the job has credit, and ends every job with exactly
  one ``done`` or ``error``.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable

import zmq

from mimo.pipeline.job import Backend, GenerationJob
from mimo.pipeline.presets import PRESETS

from . import protocol as P
from .connections import IOThread
from .jobs import ServerJob, WorkerThreads

log = logging.getLogger("mimo.server")


class Server(IOThread, WorkerThreads):
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
        # shared by the I/O thread (connections.py) and the worker threads (jobs.py), under _lock
        self._lock = threading.Condition()
        self._queue: collections.deque[ServerJob] = collections.deque()
        self._jobs: dict[str, ServerJob] = {}
        self._running: dict[int, ServerJob] = {}  # slot index -> its job (server/workers.py)
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

    # -- what the server reports ----------------------------------------------------------------
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
