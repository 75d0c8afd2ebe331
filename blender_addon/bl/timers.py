"""Hand job events from the background thread to Blender's main thread.

``bpy.app.timers`` calls :func:`drain_all` every 0.1 s while a job runs; it empties each job's
queue, updates the job's state (status, progress, error) and the preview and, when the job ends,
adds the image-sequence strip and pushes an undo step for it (so Ctrl+Z removes just the strip
and Ctrl+Shift+Z brings it back). Headless module ``bpy`` never fires timers: tests call
:func:`drain` / :func:`drain_all` themselves.

Job state lives here, on the Python side: undo restores scene properties (it would hide Cancel
while a job runs), not this module. ``scene.mimo.status``/``progress``/``last_error``/``job_dir``
are only a copy, saved with the file; the panel reads :func:`active` and :func:`last`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue

import bpy
import numpy as np

from ..core.client import TERMINAL, JobClient
from . import vse

log = logging.getLogger(__name__)
INTERVAL_S = 0.1
PREVIEW_IMAGE = "MIMO Preview"


@dataclasses.dataclass
class ActiveJob:
    client: JobClient
    scene_name: str
    job_dir: str
    start_frame: int
    total: int
    hold: int = 1  # scene frames per generated frame (the scene's frame step)
    received: int = 0
    strip_name: str = ""
    state: str = "running"
    warning: str = ""  # shown by the panel for the job's whole life (unsaved .blend: where frames go)
    status: str = "starting"
    progress: float = 0.0
    error: str = ""
    backend: str = ""  # with size and seconds_per_frame: the next Generate's time estimate
    size: tuple = (0, 0)
    seconds_per_frame: float = 0.0

    def show(self, scene: bpy.types.Scene, status: str | None = None, progress: float | None = None,
             error: str | None = None) -> None:
        """Update the job's state and its copy in ``scene.mimo``."""
        s = scene.mimo
        if status is not None:
            self.status = s.status = status
        if progress is not None:
            self.progress = s.progress = progress
        if error is not None:
            self.error = s.last_error = error


_JOBS: dict[str, ActiveJob] = {}  # running, by scene name
_LAST: dict[str, ActiveJob] = {}  # the last ended job of each scene, for the panel


def start(scene: bpy.types.Scene, job: ActiveJob) -> None:
    """Start the job's thread and the timer that drains it (one job per scene)."""
    _JOBS[scene.name] = job
    job.client.start()
    if not bpy.app.timers.is_registered(drain_all):
        # persistent: survives file loads (which cancel the jobs, see _on_load_pre)
        bpy.app.timers.register(drain_all, first_interval=INTERVAL_S, persistent=True)


def active(scene: bpy.types.Scene) -> ActiveJob | None:
    return _JOBS.get(scene.name)


def last(scene: bpy.types.Scene) -> ActiveJob | None:
    """The scene's last ended job (this session), or None."""
    return _LAST.get(scene.name)


def drain_all() -> float | None:
    """Timer callback: drain every job; keep ticking while any is unfinished."""
    for name in list(_JOBS):
        scene = bpy.data.scenes.get(name)
        if scene is None:
            _JOBS.pop(name).client.cancel()
            continue
        drain(scene)
    return INTERVAL_S if _JOBS else None


def drain(scene: bpy.types.Scene) -> str | None:
    """Apply all queued events of the scene's job; return the job's state ("running", "done",
    "error", "cancelled") or None when the scene has no job."""
    job = _JOBS.get(scene.name)
    if job is None:
        return None
    latest = None  # only the newest image of this drain reaches the preview
    while True:
        try:
            ev = job.client.events.get_nowait()
        except queue.Empty:
            break
        kind, data = ev.kind, ev.data
        if kind == "status":
            job.show(scene, status=data[0])
        elif kind == "capabilities":
            from .operators import show_capabilities

            show_capabilities(scene.mimo, data[0])
        elif kind == "accepted":
            job.show(scene, status=f"job {data[0]} queued at {data[1]}" if data[1] else f"job {data[0]} running")
            job.total = data[2] or job.total
        elif kind == "progress":
            stage, step, total, eta = data
            job.show(scene, status=f"{stage} {step}/{total}" + (f", about {eta:.0f} s left" if eta >= 0 else ""))
            if stage not in ("frames", "queued") and total:
                job.show(scene, progress=min(1.0, step / total) * 0.5)
        elif kind == "preview":
            latest = data[1]
        elif kind == "frame":
            latest = data[2]
            job.received = data[0] + 1
            job.show(scene, status=f"frame {job.received}/{job.total}",
                     progress=0.5 + 0.5 * job.received / max(job.total, job.received))
        elif kind in TERMINAL:
            _finish(scene, job, kind, data)
            break
    if latest is not None:
        _show_preview(scene.mimo, latest)
    return job.state


def _finish(scene: bpy.types.Scene, job: ActiveJob, kind: str, data: tuple) -> None:
    job.state = kind
    _JOBS.pop(scene.name, None)
    _LAST[scene.name] = job
    if kind == "done":
        files, stats = data[2], data[1]
        if files and isinstance(stats.get("total_s"), (int, float)):
            job.seconds_per_frame = float(stats["total_s"]) / len(files)
        job.show(scene, status=f"done: {len(files)} frames in {job.job_dir}", progress=1.0, error="")
        if files:
            _add_strip(scene, job, files, os.path.basename(job.job_dir))
        return
    kept = _keep_partial(scene, job)
    if kind == "error":
        message, field = data
        job.show(scene, error=f"{field}: {message}" if field and not message.startswith(field) else message,
                 status=f"failed; {kept}" if kept else "failed")
        _popup(job.error + (f" ({kept})" if kept else ""))
    else:
        job.show(scene, status=f"cancelled; {kept}" if kept else "cancelled")


def _add_strip(scene: bpy.types.Scene, job: ActiveJob, files: list[str], name: str, folder: str = "") -> bool:
    """Add ``files`` (in ``folder``, default the job's) as a strip at the job's start frame, with an
    undo step; False (and the error shown) when the sequencer refused it."""
    folder = folder or job.job_dir
    try:
        strip = vse.add_image_strip(scene, folder, files, job.start_frame, name=name, hold=job.hold)
    except (RuntimeError, ValueError) as exc:  # the frames are safe on disk either way
        job.show(scene, error=f"the frames are in {folder}, but the sequencer strip failed: {exc}")
        return False
    job.strip_name = strip.name
    try:  # an undo step that holds the strip: Ctrl+Z then removes only the strip, redo restores it
        bpy.ops.ed.undo_push(message=f"MIMO: add strip {strip.name}")
    except RuntimeError as exc:  # no undo stack in this context: the strip stays, just not undoable
        log.warning("MIMO: no undo step for the strip: %s", exc)
    return True


def _keep_partial(scene: bpy.types.Scene, job: ActiveJob) -> str:
    """A job that ended early keeps the frames written so far as a strip named "... (partial)";
    returns what was kept, in words ("" when nothing had arrived: the empty folder is removed).
    Several characters: the frames every body has arrived for are composited (the same partial
    strip); before that, each character's pass that has frames becomes a strip of its own."""
    files = list(job.client.files)  # complete files only (written under a temporary name first)
    passes = list(getattr(job.client, "kept_passes", ()))
    if not files and passes:
        return _keep_passes(scene, job, passes)
    if not files:
        try:
            os.rmdir(job.job_dir)
        except FileNotFoundError:
            pass
        except OSError:  # not empty: the passes of several characters, or a frame being written
            return f"what arrived is in {job.job_dir}"
        return ""
    total = max(job.total, len(files))
    name = os.path.basename(job.job_dir) + (" (partial)" if len(files) < total else "")
    if _add_strip(scene, job, files, name):
        return f"{len(files)} of {total} frames kept as strip '{job.strip_name}' ({job.job_dir})"
    return f"{len(files)} of {total} frames are in {job.job_dir}"


def _keep_passes(scene: bpy.types.Scene, job: ActiveJob, passes: list) -> str:
    """Several characters, ended before every body had a frame: one strip per character pass
    that has frames, named "<job> character <k> (partial)"; returns what was kept, in words."""
    base, total = os.path.basename(job.job_dir), job.total
    said = []
    for k, folder, files in passes:
        n = max(total, len(files))
        name = f"{base} character {k + 1}" + (" (partial)" if len(files) < n else "")
        if _add_strip(scene, job, files, name, folder):
            said.append(f"character {k + 1}: {len(files)} of {n} frames kept as strip '{job.strip_name}'")
        else:
            said.append(f"character {k + 1}: {len(files)} of {n} frames are in {folder}")
    return ("not every character had frames, nothing composited; " + ", ".join(said) + f" ({job.job_dir})")


def _show_preview(settings, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    img = bpy.data.images.get(PREVIEW_IMAGE)
    if img is None or tuple(img.size) != (w, h):
        if img is not None:
            bpy.data.images.remove(img)
        img = bpy.data.images.new(PREVIEW_IMAGE, width=w, height=h)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = image[::-1].astype(np.float32) / 255.0  # Blender's pixels start bottom-left
    img.pixels.foreach_set(rgba.ravel())
    img.update()  # (an Image Editor showing it redraws)
    img.preview_ensure()
    img.preview.reload()  # the panel's thumbnail shows the new pixels too, not the first ones
    settings.preview_image = img.name


def _popup(message: str) -> None:
    wm = bpy.context.window_manager
    if bpy.app.background or wm is None or not wm.windows:  # no UI to pop up in (and it crashes)
        log.error("MIMO: %s", message)
        return
    wm.popup_menu(lambda self, ctx: self.layout.label(text=message), title="MIMO", icon="ERROR")


def cancel(scene: bpy.types.Scene) -> bool:
    job = _JOBS.get(scene.name)
    if job is None:
        return False
    job.client.cancel()
    job.show(scene, status="cancelling")
    return True


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    """Another file replaces this one: its jobs must not put strips into that file (jobs are
    known by scene name). Cancel them — the frames written so far stay in their folders — and
    forget the panel's last jobs."""
    for job in _JOBS.values():
        job.client.cancel()
        log.warning("MIMO: another file was opened: job cancelled, %d frames kept in %s",
                    len(job.client.files), job.job_dir)
    _JOBS.clear()
    _LAST.clear()


def attach() -> None:
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def stop_all() -> None:
    """Cancel every job, stop the timer and the file-load handler (unregister)."""
    for job in _JOBS.values():
        job.client.cancel()
    _JOBS.clear()
    _LAST.clear()
    if bpy.app.timers.is_registered(drain_all):
        bpy.app.timers.unregister(drain_all)
    while _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
