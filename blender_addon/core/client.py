"""Talk to mimo-server from a background thread; hand events to Blender through a queue.

:class:`JobClient` runs hello -> submit -> events on its own thread with the vendored protocol
client, writes each final frame as a PNG into the job folder on that thread (no bpy needed), and
puts plain :class:`Event` tuples on ``events`` (a ``queue.Queue``). Blender's main thread drains
the queue from a ``bpy.app.timers`` callback (bl/timers.py); tests drain it directly. Exactly one
terminal event ends every job: ``done``, ``error`` or ``cancelled``.

Event kinds and payloads:
    status (text,)  capabilities (dict,)  accepted (job_id, queue_position, num_frames)
    progress (stage, step, total, eta_s (< 0: unknown))  preview (index, image (h, w, 3) uint8)
    frame (index, path, thumbnail (h, w, 3) uint8)
    done (num_frames, stats, files)  error (message, field)  cancelled ()
"""
from __future__ import annotations

import queue
import threading
from typing import Any, NamedTuple

from .frames import FRAME_NAME, frame_path
from .png import write_png

TERMINAL = ("done", "error", "cancelled")
PREVIEW_SIDE = 256  # frames also feed the panel's live preview, subsampled to at most this


class Event(NamedTuple):
    kind: str
    data: tuple


class JobClient:
    """One generation job against one server. ``request`` is a vendored-protocol
    ``GenerateRequest``; frames go to ``job_dir`` (which must exist and be empty)."""

    def __init__(self, address: str, request: Any, job_dir: str, *, timeout: float = 5.0,
                 cancel_grace_s: float = 2.0, client_name: str = "blender"):
        self.address, self.request, self.job_dir = address, request, job_dir
        self.timeout, self.cancel_grace_s, self.client_name = timeout, cancel_grace_s, client_name
        self.events: queue.Queue[Event] = queue.Queue()
        self.job_id = ""
        self._cancel = threading.Event()
        self._client = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="mimo-job", daemon=True)
        self._ended = False  # a terminal event was queued (exactly one per job)
        #: names (inside ``job_dir``, in index order) of the frames completely written so far; a
        #: job that ends early (cancel, server death) keeps them (bl/timers.py makes a partial strip)
        self.files: list[str] = []
        self.finished = threading.Event()

    def start(self) -> JobClient:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask for cancellation (any thread, any time); the job ends with a ``cancelled`` event,
        at the latest ``cancel_grace_s`` later even when the server stays silent (a busy stage
        sends nothing until it finishes); frames arriving after that are not written."""
        if self._cancel.is_set():
            return
        self._cancel.set()
        with self._lock:
            if self._client is not None and self.job_id:
                try:
                    self._client.cancel(self.job_id)
                except Exception:  # the socket may already be closed; the thread reports
                    pass
        timer = threading.Timer(self.cancel_grace_s, self._end, args=("cancelled",))
        timer.daemon = True
        timer.start()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _put(self, kind: str, *data: Any) -> None:
        if kind in TERMINAL:
            self._end(kind, *data)
        elif not self._ended:
            self.events.put(Event(kind, data))

    def _end(self, kind: str, *data: Any) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self.events.put(Event(kind, data))

    def _run(self) -> None:
        try:
            self._talk()
        except Exception as exc:  # every failure becomes one terminal event, never a dead thread
            field = getattr(getattr(exc, "error", None), "field", "") or getattr(exc, "field", "") or ""
            if self._cancel.is_set():
                self._put("cancelled")
            else:
                self._put("error", str(exc) or type(exc).__name__, field)
        finally:
            with self._lock:
                if self._client is not None:
                    self._client.close()
                    self._client = None
            self.finished.set()

    def _talk(self) -> None:
        from ..vendor.client import Client
        from ..vendor.protocol import Done, Error, Frame, Preview, Progress
        from .request import for_server

        with self._lock:
            self._client = Client(self.address, timeout=self.timeout, name=self.client_name)
        client = self._client
        self._put("status", f"connecting to {self.address}")
        caps = client.hello()
        self._put("capabilities", capabilities_dict(caps))
        if self._cancel.is_set():
            self._put("cancelled")
            return
        accepted = client.submit(for_server(self.request, caps))
        with self._lock:
            self.job_id = accepted.job_id
        self._put("accepted", accepted.job_id, accepted.queue_position, accepted.num_frames)
        files = self.files
        if self._cancel.is_set():
            client.cancel(accepted.job_id)
        for msg in client.events(accepted.job_id, timeout=self.timeout):
            if self._ended:  # given up after a cancel: stop listening
                return
            if isinstance(msg, Progress):
                self._put("progress", msg.stage, msg.step, msg.total, msg.eta_s)
            elif isinstance(msg, Preview):
                self._put("preview", msg.index, msg.image)
            elif isinstance(msg, Frame):
                if self._ended:
                    return
                if msg.index != len(files):
                    raise RuntimeError(f"frame {msg.index} arrived, expected {len(files)}")
                path = frame_path(self.job_dir, msg.index)
                write_png(path, msg.image)
                files.append(FRAME_NAME.format(msg.index))  # (list.append is atomic across threads)
                step = max(1, -(-max(msg.image.shape[:2]) // PREVIEW_SIDE))
                self._put("frame", msg.index, path, msg.image[::step, ::step])
            elif isinstance(msg, Done):
                if self._cancel.is_set():
                    self._put("cancelled")
                else:
                    self._put("done", len(files), dict(msg.stats), list(files))
                return
            elif isinstance(msg, Error):
                if msg.code == "cancelled" or self._cancel.is_set():
                    self._put("cancelled")
                else:
                    self._put("error", f"{msg.code}: {msg.message}", msg.field)
                return


def capabilities_dict(caps) -> dict:
    """The parts of a server's Capabilities the panel shows and offers (plain values)."""
    return {"server": caps.server, "backends": list(caps.backends), "device": caps.device,
            "weights": caps.weights, "limits": dict(caps.limits), "modes": dict(caps.modes),
            "mode_defaults": dict(caps.mode_defaults), "backend_summaries": dict(caps.backend_summaries),
            "protocol_version": list(caps.protocol_version)}
