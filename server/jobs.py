"""The server's worker threads, one per executor slot (part of :class:`server.core.Server`, which
creates the state used here and starts the threads), and the job record both threads share.

A worker takes the queue's head job when the executor (server/workers.py) picks its slot, builds
the synthesis input (:mod:`server.adapter`), calls the backend with :class:`JobEvents` wired to
its PUSH socket (the I/O thread forwards what it pushes), and ends every job with exactly one
``done`` or ``error``. Frames go out in order, exactly once, only while the job has credit (the
worker waits otherwise), so a slow client never makes the server buffer a whole job; a job whose
client grants no credit for ``stall_timeout_s`` is cancelled, so the worker moves on.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import time

import numpy as np
import zmq

from mimo.errors import FieldError
from mimo.pipeline.job import GenerationJob, JobCancelled, JobEvents

from . import protocol as P

log = logging.getLogger("mimo.server")
#: what the last worker thread to stop pushes, so the I/O thread stops after its messages
STOP = b"__stop__"


@dataclasses.dataclass(eq=False)
class ServerJob:
    """One submitted job, from the queue to its last message (guarded by the server's lock)."""

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


class WorkerThreads:
    """The worker threads' half of :class:`server.core.Server` (``_worker_loop`` is their body)."""

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
                push.send(STOP)
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

    def _send(self, job: ServerJob, msg) -> None:
        self._tls.push.send_multipart([job.client, *P.encode(msg)], copy=False)

    def _send_blocking_previews(self, job: ServerJob, gen: GenerationJob, preview) -> None:
        """Before a slow backend starts: the motion codes over the scene as preview frames, so a
        client can show the shot while it waits."""
        for index, image in _preview_frames(gen):
            preview(index, image)

    def _run(self, job: ServerJob, slots: list) -> None:
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
