"""The server's I/O thread: the only thread that touches the ROUTER socket (part of
:class:`server.core.Server`, which creates the state used here and starts the thread).

It receives one message at a time, frame by frame, dropping it as soon as it exceeds
``max_message_bytes``; answers hello, status and heartbeats at once (also while a job runs);
validates a submit and admits it to the queue within the limits (``max_jobs_per_client``, and at
most ``max_jobs`` jobs holding ``max_queued_bytes`` of requests across all clients), replying
``accepted`` before the worker can send anything for the job; applies credit and cancels; and
forwards to the clients what the worker threads push over the inproc PULL socket (progress,
frames, done, error).

A client whose connection closes (a killed process) has its jobs cancelled at once: the thread
probes the connections of clients with jobs twice a second (a ROUTER with ``ROUTER_MANDATORY``
reports a peer that is gone); silence longer than ``heartbeat_timeout_s`` is the fallback for
peers whose connection never closes.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import uuid

import msgpack
import zmq

from mimo.pipeline.presets import PRESETS

from . import protocol as P
from .jobs import STOP, ServerJob

log = logging.getLogger("mimo.server")


class IOThread:
    """The I/O thread's half of :class:`server.core.Server` (``_io_loop`` is its body)."""

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
                    if frames[0].bytes == STOP:
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

    # -- the queue: admission, cancels, credit, heartbeats ------------------------------------------
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
            job = ServerJob(job_id=uuid.uuid4().hex[:16], client=client, request=req,
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

    def _cancel_locked(self, job: ServerJob, why: str) -> None:
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


def _peek_tag(header_frame) -> str:
    """The ``tag`` of a message we will not decode (so a refusal still reaches its submit)."""
    try:
        header = msgpack.unpackb(header_frame.buffer, raw=False)
        tag = header.get("tag", "") if isinstance(header, dict) else ""
        return tag if isinstance(tag, str) else ""
    except Exception:
        return ""
