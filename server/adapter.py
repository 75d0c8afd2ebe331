"""The server's side of the one door into the library: a wire
:class:`~server.protocol.GenerateRequest` becomes the library's motion and camera types
(:class:`mimo.motion.MotionClip`, :class:`mimo.motion.CameraTrack`) and settings, and
:func:`mimo.pipeline.prepare.prepare_job` builds the job — the same function ``mimo generate``
calls, so both front ends prepare the character, render the codes and resolve defaults alike.

This runs on the worker thread (it may use the GPU). Errors are :class:`mimo.errors.FieldError`
whose ``field`` is the request's field (the library's names are the wire's; ``size`` becomes
``width``, a motion's frame count ``camera.K`` or ``codes``); the server sends them as
``invalid_field`` errors.
"""
from __future__ import annotations

import logging
import threading

import numpy as np

from mimo.errors import FieldError
from mimo.pipeline.job import GenerationJob, JobLimits
from mimo.pipeline.prepare import ClipMotion, CodeFrames, JobSettings, prepare_job, render_motion

from .protocol import BodyParams, CameraParams, GenerateRequest

log = logging.getLogger("mimo.server")
_BODY_CACHE: dict[tuple[str, str], object] = {}
_BODY_LOCK = threading.Lock()


def available_body_models() -> list[str]:
    """Body models this server can load now: the registered kinds (:mod:`mimo.body.kinds`) that
    are shipped or whose licensed file is installed."""
    from mimo.body import installed_kinds

    return installed_kinds()


def body_model_betas(models: list[str], device: str | None = None) -> dict[str, int]:
    """Shape coefficients each body model takes, loading each once (and keeping it for the jobs).
    A model whose file does not load is left out, with a warning in the log."""
    out = {}
    for model in models:
        try:
            out[model] = int(load_body_cached(model, device).num_betas)
        except ValueError as exc:
            log.warning("body model %r not offered: %s", model, exc)
    return out


def load_body_cached(model: str, device: str | None):
    """One body model per (name, device), loaded once and kept (like the backends' networks)."""
    key = (model, str(device))
    with _BODY_LOCK:
        if key not in _BODY_CACHE:
            from mimo.body import load_body

            try:
                _BODY_CACHE[key] = load_body(model, device=device)
            except (FileNotFoundError, ValueError) as exc:
                raise FieldError("body_model", f"{model!r} is not available on this server ({exc})") from None
        return _BODY_CACHE[key]


def request_clip(req: GenerateRequest):
    """The request's bodies as a :class:`mimo.motion.MotionClip` at the request's fps.

    Shapes: bodies[i] as in :class:`~server.protocol.BodyParams` -> clip of F frames
    """
    from mimo.motion import MotionClip

    tracks = [_body_track(b, req.body_model) for b in req.bodies]
    return MotionClip(fps=float(req.fps), bodies=tracks)


def _body_track(b: BodyParams, model: str):
    from mimo.motion import BodyTrack

    copy = lambda a: None if a is None else np.array(a)  # noqa: E731 - out of the receive buffers
    return BodyTrack(global_orient=copy(b.global_orient), body_pose=copy(b.body_pose), transl=copy(b.transl),
                     betas=copy(b.betas), left_hand_pose=copy(b.left_hand_pose),
                     right_hand_pose=copy(b.right_hand_pose), model=model)


def request_camera(cam: CameraParams, fps: float):
    """The wire camera as a :class:`mimo.motion.CameraTrack` (K's near-zero entries made exact:
    the wire check allows float32 round-off there, the rasterizer wants the pinhole form).

    Shapes: K, R (F, 3, 3), t (F, 3) -> CameraTrack of F frames
    """
    from mimo.motion import CameraTrack

    K = np.array(cam.K, dtype=np.float64)
    K[:, 1, 0], K[:, 2] = 0.0, (0.0, 0.0, 1.0)
    return CameraTrack(K=K, R=np.array(cam.R, dtype=np.float64), t=np.array(cam.t, dtype=np.float64),
                       width=int(cam.width), height=int(cam.height), fps=float(fps))


def request_motion(req: GenerateRequest, device: str | None = None) -> ClipMotion:
    """The bodies and camera of ``req`` as the library's :class:`~mimo.pipeline.prepare.ClipMotion`."""
    body = load_body_cached(req.body_model, device)
    return ClipMotion(clip=request_clip(req), body=body, camera=request_camera(req.camera, req.fps))


def render_request_codes(req: GenerateRequest, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The motion codes the server renders for ``req`` (bodies + camera) at its output size, by
    the job builder's rule (:func:`mimo.pipeline.prepare.render_motion`).

    Shapes: -> codes (F, H, W, 3) uint8, mask (F, H, W) bool
    """
    return render_motion(request_motion(req, device), (req.width, req.height), device)


def request_settings(req: GenerateRequest) -> JobSettings:
    return JobSettings(mode=req.mode, steps=req.steps, cfg=float(req.cfg), seed=req.seed, context=req.context,
                       overlap=req.overlap, roi_size=req.roi_size, fps=float(req.fps), raw=req.raw,
                       size=(req.width, req.height))


def build_job(req: GenerateRequest, device: str | None = None, limits: dict | JobLimits | None = None
              ) -> GenerationJob:
    """Wire request -> backend job through :func:`mimo.pipeline.prepare.prepare_job`, checked
    against ``limits`` (the server's configured limits; default the library's).

    Shapes: see :mod:`mimo.pipeline.job`.
    """
    limits = limits if isinstance(limits, JobLimits) else JobLimits.from_mapping(limits)
    if req.codes is not None:
        motion = CodeFrames(codes=np.array(req.codes), fps=float(req.fps))
    else:
        motion = request_motion(req, device)
    copy = lambda a: None if a is None else np.array(a)  # noqa: E731
    try:
        return prepare_job(req.character, motion, request_settings(req), scene=copy(req.scene),
                           occlusion=copy(req.occlusion), occlusion_source=copy(req.occlusion_source),
                           limits=limits, device=device)
    except FieldError as exc:
        field = _WIRE_FIELDS.get(exc.field, exc.field)
        if exc.field == "motion":
            field = "codes" if req.codes is not None else "camera.K"
        if field == exc.field:
            raise
        raise FieldError(field, exc.message) from None


#: library field -> the request field that carries it, where the names differ
_WIRE_FIELDS = {"size": "width", "character_mask": "character"}
