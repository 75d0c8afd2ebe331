"""A plain Python client of ``mimo-server`` (no torch, no bpy): hello, submit, events, cancel.

The Blender add-on vendors a byte-identical copy of this file next to ``protocol.py``; it may
import only the standard library, ``zmq``, ``msgpack``, ``numpy`` and ``.protocol``.

Typical use (from any one thread, e.g. the add-on's background thread)::

    client = Client("tcp://127.0.0.1:5555", timeout=10)
    caps = client.hello()                       # MimoClientError with a reason on silence
    job = client.submit(request)                # -> Accepted(job_id, queue_position)
    for event in client.events(job.job_id):     # Progress / Preview / Frame, then Done or Error
        ...
    client.close()

``cancel(job_id)`` may be called from another thread while one thread iterates ``events``; every
socket operation holds one lock (ZeroMQ sockets may change threads across a full memory barrier).
While ``events`` waits it sends a :class:`~.protocol.Heartbeat` every ``heartbeat_s`` seconds, so
the server keeps the job; it grants one frame of credit after the caller has taken each frame,
so a slow consumer slows the server down instead of filling memory (back-pressure).
"""
from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import zmq

from . import protocol as P

log = logging.getLogger(__name__)

_JOB_EVENTS = (P.Progress, P.Preview, P.Frame, P.Done, P.Error)


class MimoClientError(Exception):
    """The server could not be reached, went silent, or refused a request. ``error`` holds the
    server's :class:`~.protocol.Error` when there was one."""

    def __init__(self, message: str, error: P.Error | None = None):
        super().__init__(message)
        self.error = error


def load_curve_keys(server_public: str, client_secret: str) -> dict[str, bytes]:
    """Read the server's public key file and this client's secret key file (as written by
    ``mimo-server keys generate``) into the ``curve`` argument of :class:`Client`."""
    import zmq.auth

    server_pub, _ = zmq.auth.load_certificate(server_public)
    pub, sec = zmq.auth.load_certificate(client_secret)
    if sec is None:
        raise ValueError(f"client_secret: {client_secret!r} holds no secret key")
    return {"server_public": server_pub, "public": pub, "secret": sec}


class Client:
    """DEALER-socket client. ``timeout`` (s) bounds every wait for the server; ``curve`` (from
    :func:`load_curve_keys`) enables CurveZMQ encryption and authentication."""

    def __init__(self, address: str = "tcp://127.0.0.1:5555", *, timeout: float = 10.0,
                 heartbeat_s: float = 1.0, curve: dict[str, bytes] | None = None,
                 name: str = "", context: zmq.Context | None = None):
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout: expected seconds > 0, got {timeout!r}")
        self.address, self.timeout, self.heartbeat_s = address, float(timeout), float(heartbeat_s)
        self.name = name or f"python-client-{os.getpid()}"
        self._curve = curve
        self._lock = threading.RLock()
        self._sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self._sock.linger = 0
        self._sock.ipv6 = address.startswith("tcp://[")  # an IPv6 address such as tcp://[::1]:5555
        # a DEALER whose only connection failed (e.g. a refused CurveZMQ handshake) blocks on send
        self._sock.sndtimeo = max(1, int(self.timeout * 1000))
        if curve is not None:
            self._sock.curve_serverkey = curve["server_public"]
            self._sock.curve_publickey = curve["public"]
            self._sock.curve_secretkey = curve["secret"]
        self._sock.connect(address)
        self._jobs: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._other: collections.deque = collections.deque()
        self._tags = itertools.count()
        self._abandoned: set[str] = set()
        self._last_heard = 0.0
        self._last_sent = 0.0
        self.capabilities: P.Capabilities | None = None

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(self, msg) -> None:
        self._send_frames(P.encode(msg))

    def _send_frames(self, frames: list) -> None:
        with self._lock:
            try:
                self._sock.send_multipart(frames, copy=False)
            except zmq.Again:
                raise self._silence(self.timeout) from None
            self._last_sent = time.monotonic()

    def _pump(self, wait_s: float) -> bool:
        """Receive at most one message (waiting up to ``wait_s``) into the inboxes."""
        with self._lock:
            if not self._sock.poll(max(0, int(wait_s * 1000))):
                return False
            frames = self._sock.recv_multipart(copy=False)
        self._last_heard = time.monotonic()
        try:
            msg = P.decode(frames)
        except P.ProtocolError as exc:
            if exc.code == "version":
                raise MimoClientError(f"{self.address}: {exc}") from None
            log.warning("dropping a malformed message from %s: %s", self.address, exc)
            return True
        if isinstance(msg, P.Accepted) and msg.tag in self._abandoned:
            # we gave up waiting for this submit: cancel it rather than hold the server's worker
            self._abandoned.discard(msg.tag)
            self._send(P.Cancel(job_id=msg.job_id))
        elif isinstance(msg, _JOB_EVENTS) and msg.job_id:
            self._jobs[msg.job_id].append(msg)
        elif not isinstance(msg, P.Heartbeat):
            self._other.append(msg)
        return True

    def _silence(self, waited: float) -> MimoClientError:
        why = (f"no answer from {self.address} within {waited:.1f} s: is `mimo-server` running "
               "there and reachable?")
        if self._curve is not None:
            why += (" With CurveZMQ a failed handshake is silent: check that the server public "
                    "key is right and that this client's public key is in the server's allowed "
                    "clients folder.")
        return MimoClientError(why)

    def _wait_other(self, want: tuple, timeout: float | None, tag: str | None = None):
        """Wait for a non-job reply of a type in ``want`` (or an Error with the same tag)."""
        timeout = self.timeout if timeout is None else timeout
        start = time.monotonic()
        while True:
            with self._lock:
                for msg in list(self._other):
                    if isinstance(msg, want) and (tag is None or getattr(msg, "tag", tag) == tag):
                        self._other.remove(msg)
                        return msg
                    # an untagged error answers whatever we sent last (e.g. an undecodable message)
                    if isinstance(msg, P.Error) and (tag is None or msg.tag in (tag, "")):
                        self._other.remove(msg)
                        raise MimoClientError(f"server refused: {msg.code}: "
                                              f"{msg.field + ': ' if msg.field else ''}{msg.message}", msg)
            left = start + timeout - time.monotonic()
            if left <= 0:
                raise self._silence(timeout)
            self._pump(min(left, 0.05))

    # -- API --------------------------------------------------------------------------------------
    def hello(self, timeout: float | None = None) -> P.Capabilities:
        """Ask the server who it is; raises :class:`MimoClientError` saying why on silence."""
        self._send(P.Hello(client=self.name))
        self.capabilities = self._wait_other((P.Capabilities,), timeout)
        return self.capabilities

    def status(self, timeout: float | None = None) -> P.StatusReply:
        self._send(P.Status())
        return self._wait_other((P.StatusReply,), timeout)

    def submit(self, request: P.GenerateRequest, *, credit: int = 8, validate: bool = True,
               timeout: float | None = None) -> P.Accepted:
        """Queue a job. The request is validated here first (same rules as the server) unless
        ``validate`` is False; a refusal raises :class:`MimoClientError` with the server's Error.

        Shapes:
            see :class:`~.protocol.GenerateRequest`.
        """
        if not (isinstance(credit, int) and credit >= 1):
            raise ValueError(f"credit: expected an integer >= 1, got {credit!r}")
        caps = self.capabilities
        if validate:
            P.validate_request(request, caps.limits if caps else None, caps.body_betas if caps else None,
                               modes=(caps.modes or None) if caps else None)  # a 1.1 server reports none
        tag = f"{self.name}:{next(self._tags)}"
        frames = P.encode(P.Submit(request=request, credit=credit, tag=tag))
        limit = caps.limits.get("max_message_bytes") if caps else None
        size = sum(memoryview(f).nbytes for f in frames)
        if limit is not None and size > limit:  # the server would drop it without an answer
            raise MimoClientError(f"request: {size} bytes, more than the server's limit of {limit} "
                                  "bytes (max_message_bytes); send fewer or smaller frames")
        self._send_frames(frames)
        try:
            return self._wait_other((P.Accepted,), timeout, tag=tag)
        except MimoClientError as exc:
            if exc.error is None:  # silence: if the server accepts it later, cancel it then
                self._abandoned.add(tag)
            raise

    def cancel(self, job_id: str) -> None:
        """Ask the server to cancel; the job's events end with ``Error(code="cancelled")`` (or
        ``Done`` if it finished first). Safe to call from another thread."""
        self._send(P.Cancel(job_id=job_id))

    def heartbeat(self) -> None:
        self._send(P.Heartbeat(time=time.time()))

    def events(self, job_id: str, timeout: float | None = None) -> Iterator:
        """Yield the job's Progress, Preview and Frame messages in arrival order (frames in index
        order), then its final Done or Error, then stop. Raises :class:`MimoClientError` when the
        server is silent (not even heartbeats) for ``timeout`` seconds."""
        timeout = self.timeout if timeout is None else timeout
        self._last_heard = time.monotonic()
        inbox = self._jobs[job_id]
        while True:
            now = time.monotonic()
            if now - self._last_sent >= self.heartbeat_s:
                self.heartbeat()
            if not inbox:
                if now - self._last_heard > timeout:
                    raise self._silence(timeout)
                self._pump(min(0.05, self.heartbeat_s))
                continue
            msg = inbox.popleft()
            yield msg
            if isinstance(msg, P.Frame):
                self._send(P.Credit(job_id=job_id, frames=1))
            elif isinstance(msg, (P.Done, P.Error)):
                self._jobs.pop(job_id, None)
                return

    def generate(self, request: P.GenerateRequest, *, on_event=None, credit: int = 8,
                 timeout: float | None = None) -> tuple[np.ndarray, dict]:
        """Submit, wait, and return ``(frames (F, H, W, 3) uint8, stats)``; ``on_event(msg)`` sees
        every event. Raises :class:`MimoClientError` if the job fails or is cancelled.

        Shapes:
            frames (F, H, W, 3) uint8
        """
        accepted = self.submit(request, credit=credit, timeout=timeout)
        frames: list[np.ndarray] = []
        for msg in self.events(accepted.job_id, timeout=timeout):
            if on_event is not None:
                on_event(msg)
            if isinstance(msg, P.Frame):
                frames.append(msg.image)
            elif isinstance(msg, P.Error):
                raise MimoClientError(f"job {msg.job_id} failed: {msg.code}: {msg.message}", msg)
            elif isinstance(msg, P.Done):
                return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8), msg.stats
        raise MimoClientError(f"job {accepted.job_id}: events ended without Done")  # unreachable

    def close(self) -> None:
        with self._lock:
            self._sock.close(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
