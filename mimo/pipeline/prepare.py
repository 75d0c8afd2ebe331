"""One door into the library: the character, the motion and the settings in, a checked
:class:`~mimo.pipeline.job.GenerationJob` out. Every front end comes here — ``mimo generate``
reads its files and calls :func:`prepare_job`; ``mimo-server`` maps the wire request to the same
types (``server/adapter.py``) and calls it too — so one shot gives the same job whichever door it
came through. The layers and one job's path from the panel to frames: docs/ARCHITECTURE.md.

The rules, each in one place:

* character: :func:`mimo.pipeline.character.prepare_character` (alpha or mask: composited on
  white and cropped to the figure);
* motion codes of a :class:`ClipMotion`: :func:`mimo.codes.render.render_clip` with
  ``remove_hands="auto"`` — a hand the clip has no pose for is removed from the codes (as the
  official renderer did for undetected hands); give zeros for a visible flat hand;
* every setting left ``None`` takes the mode's default (:mod:`mimo.pipeline.presets`): ``steps``,
  ``context``, ``overlap``; ``roi_size`` None: :func:`roi_size_for` the output size; ``fps`` None:
  the motion's;
* limits: the caller's (:class:`~mimo.pipeline.job.JobLimits`, e.g. the server's configured ones),
  checked before the expensive work and once more on the finished job.

Errors are :class:`~mimo.errors.FieldError` whose ``field`` is one of the names below; the server
sends it as the wire field (the names match the request's), the CLI maps it to its option:

    character, character_mask, motion (frame count), bodies[i].<param>, camera, size, scene,
    occlusion, occlusion_source, codes, mode, steps, cfg, seed, context, overlap, roi_size, fps, raw

Shapes:
    ClipMotion: clip with F frames; camera 1 or F frames (or None: the official camera, needs size)
    CodeFrames: codes (F, H', W', 3) uint8, mask (F, H', W') bool or None
    scene (F|1, H', W', 3) uint8, occlusion (F|1, H', W') uint8, occlusion_source (F|1, H', W', 3)
        uint8, any size (resized to the output size) -> GenerationJob of (F, H, W) frames
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Union

import numpy as np

from mimo.errors import FieldError

from .job import DEFAULT_LIMITS, GenerationJob, JobLimits
from .presets import PRESETS, default_overlap, preset

#: side of the generated ROI crops when the output is at least this big (the official scripts' 784)
ROI_SIZE = 784


@dataclasses.dataclass
class ClipMotion:
    """Bodies posed by ``body`` (a :class:`mimo.body.BodyModel`, or one per clip body) and seen
    through ``camera`` (a :class:`mimo.motion.CameraTrack`; None: the official camera at the
    origin, which needs ``JobSettings.size``)."""

    clip: object  # mimo.motion.MotionClip
    body: object
    camera: object | None = None


@dataclasses.dataclass
class CodeFrames:
    """Ready motion code frames (e.g. an ``sdc.mp4``); ``fps`` None when unknown."""

    codes: np.ndarray
    mask: np.ndarray | None = None
    fps: float | None = None


Motion = Union[ClipMotion, CodeFrames, "Template"]  # noqa: F821 - mimo.pipeline.template.Template


@dataclasses.dataclass
class JobSettings:
    """What the user chose; ``None`` everywhere means "the default" (see the module docstring)."""

    mode: str = "exact"
    steps: int | None = None
    cfg: float = 3.5
    seed: int = 42
    context: int | None = None
    overlap: int | None = None
    roi_size: int | None = None
    fps: float | None = None
    raw: bool = False
    size: tuple[int, int] | None = None  # (width, height) of the output; None: the motion's


def roi_size_for(size: tuple[int, int], requested: int | None = None) -> int:
    """``requested``, else 784, or the output's longer side (rounded up to a multiple of 8, at
    least 64) when that is smaller: generating a 64x64 video at 784x784 wastes ~150x the work."""
    if requested is not None:
        return requested
    return int(min(ROI_SIZE, max(64, -(-max(size) // 8) * 8)))


def resolve_settings(settings: JobSettings) -> JobSettings:
    """``settings`` with the mode's defaults filled in (``steps``, ``context``, ``overlap``)."""
    if settings.mode not in PRESETS:
        raise FieldError("mode", f"expected one of {', '.join(PRESETS)}, got {settings.mode!r}")
    p = preset(settings.mode)
    pick = lambda v, d: d if v is None else v  # noqa: E731
    context = pick(settings.context, p.context)
    return dataclasses.replace(settings, steps=pick(settings.steps, p.steps), context=context,
                               overlap=pick(settings.overlap, default_overlap(p, context)))


def prepare_job(character, motion: Motion, settings: JobSettings | None = None, *,
                character_mask=None, scene: np.ndarray | None = None, occlusion: np.ndarray | None = None,
                occlusion_source: np.ndarray | None = None, limits: JobLimits | None = None,
                device=None, progress: Callable[[int, int], None] | None = None) -> GenerationJob:
    """Build and check the job (see the module docstring for every rule).

    Args:
        character: encoded image bytes, a file path, or an (H, W, 3|4) uint8 array; None only
            for a backend that never looks at it (the preview): a white image.
        motion: :class:`ClipMotion`, :class:`CodeFrames` or a :class:`mimo.pipeline.template.Template`
            (whose scene, occlusion and source video are used unless given here).
        settings: the user's settings (default: every default).
        character_mask: figure mask for an RGB character (file path or (H, W) uint8).
        scene, occlusion, occlusion_source: layers, one per frame or one for all, any size.
        limits: what the job may be (default :class:`JobLimits`()).
        device: torch device for posing and rasterizing a ClipMotion.
        progress: ``progress(frames_done, frames_total)`` while rendering codes.
    """
    settings = resolve_settings(settings or JobSettings())
    limits = limits or DEFAULT_LIMITS
    if settings.size is not None:
        _check_size(settings.size, limits, settings.raw)
    codes, mask, fps, layers = _motion_codes(motion, settings, limits, device, progress)
    size = (codes.shape[2], codes.shape[1])
    _check_size(size, limits, settings.raw)
    F = len(codes)
    scene = _layer("scene", scene if scene is not None else layers.get("scene"), F, size, "rgb")
    occlusion = _layer("occlusion", occlusion if occlusion is not None else layers.get("occlusion"), F, size,
                       "alpha")
    source = _layer("occlusion_source", occlusion_source if occlusion_source is not None
                    else layers.get("occlusion_source"), F, size, "rgb")
    if occlusion is not None and scene is None:
        raise FieldError("occlusion", "needs the scene frames whose pixels it puts in front")
    if character is None:
        character = np.full((64, 64, 3), 255, np.uint8)
    else:
        from .character import prepare_character

        character = prepare_character(character, character_mask)
    job = GenerationJob(
        character=character, codes=codes, code_mask=mask, scene=scene, occlusion=occlusion,
        occlusion_source=source, fps=float(settings.fps or fps or 30.0), steps=settings.steps,
        cfg=settings.cfg, seed=settings.seed, context=settings.context, overlap=settings.overlap,
        mode=settings.mode, raw=settings.raw, roi_size=roi_size_for(size, settings.roi_size), limits=limits)
    job.validate()
    return job


def render_motion(motion: ClipMotion, size: tuple[int, int], device=None,
                  progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The motion codes of a :class:`ClipMotion` at ``size`` (width, height), by the front ends'
    hand rule (a hand without a pose is left out).

    Shapes: -> codes (F, H, W, 3) uint8, mask (F, H, W) bool
    """
    from mimo.codes.render import render_clip

    return render_clip(motion.clip, motion.camera, motion.body, remove_hands="auto", size=size, device=device,
                       progress=progress)


def _check_size(size: tuple[int, int], limits: JobLimits, raw: bool) -> None:
    W, H = size
    lo, hi = limits.min_side, limits.max_side
    if not (lo <= W <= hi and lo <= H <= hi):
        raise FieldError("size", f"{W}x{H} outside {lo}..{hi} pixels")
    if raw and (W % 8 or H % 8):
        raise FieldError("size", f"raw generation at {W}x{H}: each side must be a multiple of 8")


def _check_frames(F: int, limits: JobLimits) -> None:
    if not 1 <= F <= limits.max_frames:
        raise FieldError("motion", f"expected 1..{limits.max_frames} frames, got {F}")


def _motion_codes(motion, settings: JobSettings, limits: JobLimits, device, progress):
    """-> codes (F, H, W, 3) uint8 at the output size, mask or None, fps or None, template layers."""
    from PIL import Image

    from .template import Template

    if isinstance(motion, ClipMotion):
        _check_frames(motion.clip.num_frames, limits)
        size = settings.size
        if size is None:
            if motion.camera is None:
                raise FieldError("size", "expected (width, height) with the official camera, got None")
            size = (motion.camera.width, motion.camera.height)
        _check_size(size, limits, settings.raw)
        codes, mask = render_motion(motion, size, device, progress)
        return codes, mask, motion.clip.fps, {}
    if isinstance(motion, Template):
        codes, fps = motion.codes, motion.fps
        layers = {"scene": motion.scene, "occlusion": motion.occlusion, "occlusion_source": motion.source}
        mask = None
    elif isinstance(motion, CodeFrames):
        codes, mask, fps, layers = motion.codes, motion.mask, motion.fps, {}
    else:
        raise FieldError("motion", f"expected a ClipMotion, CodeFrames or Template, got {type(motion).__name__}")
    if not (isinstance(codes, np.ndarray) and codes.dtype == np.uint8 and codes.ndim == 4 and codes.shape[3] == 3):
        raise FieldError("codes", f"expected (F, H, W, 3) uint8 frames, got {getattr(codes, 'dtype', type(codes))} "
                                  f"of shape {getattr(codes, 'shape', '?')}")
    _check_frames(len(codes), limits)
    if settings.size is not None and tuple(settings.size) != (codes.shape[2], codes.shape[1]):
        codes = _resize(codes, settings.size, Image.NEAREST)  # codes keep their exact colours
        mask = None if mask is None else _resize(mask.astype(np.uint8) * 255, settings.size, Image.NEAREST) > 127
    return np.ascontiguousarray(codes), mask, fps, layers


def _layer(name: str, frames: np.ndarray | None, F: int, size: tuple[int, int], kind: str):
    """A layer at the output size with one frame per code frame (one image is repeated)."""
    from PIL import Image

    if frames is None:
        return None
    ndim = 4 if kind == "rgb" else 3
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == ndim
            and (kind != "rgb" or frames.shape[3] == 3)):
        want = "(F, H, W, 3)" if kind == "rgb" else "(F, H, W)"
        raise FieldError(name, f"expected {want} uint8 frames, got {getattr(frames, 'dtype', type(frames))} of "
                               f"shape {getattr(frames, 'shape', '?')}")
    if len(frames) == 1 and F > 1:
        frames = np.repeat(frames, F, axis=0)
    if len(frames) != F:
        raise FieldError(name, f"expected {F} frames (one per motion-code frame) or one image, got {len(frames)}")
    resample = Image.LANCZOS if kind == "rgb" else Image.BILINEAR
    return np.ascontiguousarray(_resize(frames, size, resample))


def _resize(frames: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    from PIL import Image

    w, h = size
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), resample)) for f in frames])

