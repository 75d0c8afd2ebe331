"""Several characters in one shot: one job per body, each with its own character image, then one
frame per scene frame composited by which body is in front.

:class:`CompositeClient` has the interface of :class:`core.client.JobClient` (``events``,
``start``, ``cancel``, ``join``, ``files``, ``job_id``, ``request``), so bl/timers.py drains it the
same way. It runs the bodies' jobs one after another, each into ``<job>/pass_<k>/``, forwarding
their status and previews; then it writes ``<job>/frame_<i>.png``: at every pixel the pass of the
body that ``masks`` say is seen there (Blender's own depth test rendered them: a body in front of
another wins), and the first pass where no body is seen (the background they share).
A job that ends early (cancel, a server death) keeps what arrived: when every body's pass has
frames, the frames they all have are composited (``files``: the partial strip, as for one
character); otherwise ``kept_passes`` lists each pass folder that has frames (a strip per
character), and empty pass folders are removed.

Shapes: masks (N, F, H, W) uint8, nonzero where body k is seen at frame f
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Any

import numpy as np

from .client import PREVIEW_SIDE, TERMINAL, Event, JobClient
from .frames import FRAME_NAME, frame_path
from .png import read_png, write_png


class CompositeClient:
    def __init__(self, address: str, requests: list, job_dir: str, masks: np.ndarray, *,
                 timeout: float = 5.0, cancel_grace_s: float = 2.0):
        if len(requests) < 2 or len(masks) != len(requests):
            raise ValueError(f"requests, masks: expected one mask per request and at least 2, "
                             f"got {len(requests)} and {len(masks)}")
        self.address, self.requests, self.job_dir, self.masks = address, requests, job_dir, np.asarray(masks)
        self.timeout, self.cancel_grace_s = timeout, cancel_grace_s
        self.request = requests[0]
        self.events: queue.Queue[Event] = queue.Queue()
        self.files: list[str] = []
        #: after an early end with no composite: (body index, pass folder, frame names) of each
        #: pass that has frames
        self.kept_passes: list[tuple[int, str, list[str]]] = []
        self.job_id = ""
        self._cancel = threading.Event()
        self._current: JobClient | None = None
        self._ended = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="mimo-composite", daemon=True)

    def start(self) -> CompositeClient:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            current = self._current
        if current is not None:
            current.cancel()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _put(self, kind: str, *data: Any) -> None:
        if self._ended:
            return
        self._ended = kind in TERMINAL
        self.events.put(Event(kind, data))

    def _run(self) -> None:
        try:
            self._talk()
        except Exception as exc:  # every failure becomes one terminal event
            if self._cancel.is_set():
                self._put("cancelled")
            else:
                self._put("error", str(exc) or type(exc).__name__, "")

    def _talk(self) -> None:
        N = len(self.requests)
        passes = []
        for k, req in enumerate(self.requests):
            if self._cancel.is_set():
                self._keep(passes)
                return self._put("cancelled")
            folder = os.path.join(self.job_dir, f"pass_{k}")
            os.mkdir(folder)
            sub = JobClient(self.address, req, folder, timeout=self.timeout, cancel_grace_s=self.cancel_grace_s)
            with self._lock:
                self._current = sub
            if self._cancel.is_set():
                sub.cancel()
            sub.start()
            who = f"character {k + 1}/{N}"
            while True:
                ev = sub.events.get()
                if ev.kind == "frame":
                    self._put("status", f"{who}: frame {ev.data[0] + 1}/{req.num_frames}")
                    self._put("preview", ev.data[0], ev.data[2])
                elif ev.kind == "status":
                    self._put("status", f"{who}: {ev.data[0]}")
                elif ev.kind == "accepted":
                    self.job_id = ev.data[0]
                    self._put(ev.kind, *ev.data)
                elif ev.kind == "done":
                    passes.append((folder, ev.data[2]))
                    break
                elif ev.kind == "error":
                    self._keep(passes + [(folder, list(sub.files))])
                    return self._put("error", f"{who}: {ev.data[0]}", ev.data[1])
                elif ev.kind == "cancelled":
                    self._keep(passes + [(folder, list(sub.files))])
                    return self._put("cancelled")
                else:  # capabilities, progress
                    self._put(ev.kind, *ev.data)
        for i in range(min(len(files) for _, files in passes)):
            if self._cancel.is_set():
                return self._put("cancelled")
            path, out = self._composite(passes, i)
            step = max(1, -(-max(out.shape[:2]) // PREVIEW_SIDE))
            self._put("frame", i, path, out[::step, ::step])
        self._put("done", len(self.files), {}, list(self.files))

    def _composite(self, passes: list[tuple[str, list[str]]], i: int) -> tuple[str, np.ndarray]:
        """Write composite frame ``i`` from the passes (one per body, in order); returns its path
        and pixels."""
        images = [read_png(os.path.join(folder, files[i])) for folder, files in passes]
        out = images[0].copy()
        for k in range(len(passes)):
            seen = self.masks[k, i] > 0
            out[seen] = images[k][seen]
        path = frame_path(self.job_dir, i)
        write_png(path, out)
        self.files.append(FRAME_NAME.format(i))
        return path, out

    def _keep(self, arrived: list[tuple[str, list[str]]]) -> None:
        """The job ends early with ``arrived`` (pass folder, complete frame names) for the passes
        begun: composite the frames every body has, else keep the passes that have frames."""
        common = min(len(files) for _, files in arrived) if len(arrived) == len(self.requests) else 0
        try:
            for i in range(common):
                self._composite(arrived, i)
        except (OSError, ValueError):  # a pass frame unreadable: keep what was composited
            pass
        if self.files:
            return
        for k, (folder, files) in enumerate(arrived):
            if files:
                self.kept_passes.append((k, folder, list(files)))
            else:
                try:
                    os.rmdir(folder)
                except OSError:  # a frame is still being written into it
                    pass
