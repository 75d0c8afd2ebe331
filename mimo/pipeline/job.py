"""The contract between whoever asks for frames (CLI, server worker) and a synthesis backend.

A backend (the MIMO pipeline, or the weight-free preview) receives one :class:`GenerationJob` in
pixel space — motion codes are already rendered — and reports through :class:`JobEvents`.

Shapes:
    character  (Hc, Wc, 3) uint8   the reference image, any size (backends resize it)
    codes      (F, H, W, 3) uint8  structured motion code frames, background black
    code_mask  (F, H, W) bool      where a body covers the pixel (None: codes != 0 anywhere)
    scene      (F, H, W, 3) uint8  background plate per frame (None: white, as the official scripts)
    occlusion  (F, H, W) uint8     0..255 alpha of scene pixels that lie in front of the body
                                   (None: nothing occludes); composited from ``scene``
    occlusion_source (F, H, W, 3) uint8  pixels the occlusion alpha puts in front (None: ``scene``;
                                   templates use the source video here and the inpainted plate as scene)
    roi_size   int                 side of the square the MIMO pipeline generates each ROI crop at
                                   (784 as the official scripts); ignored when ``raw``

Front ends do not fill this in by hand: :func:`mimo.pipeline.prepare.prepare_job` builds it (one
rule for the character, the hands, each mode's defaults and the limits) for the CLI and the server.
``mode`` names a preset of :mod:`mimo.pipeline.presets`; ``context`` and ``overlap`` None mean that
preset's values, and :meth:`GenerationJob.validate` checks against ``limits`` (the server's
configured ones, or :class:`JobLimits`' defaults).
"""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable

import numpy as np

from mimo.errors import FieldError

from .presets import PRESETS, default_overlap, is_int, preset


@dataclasses.dataclass(frozen=True)
class JobLimits:
    """The size limits a job is checked against. The defaults are the library's; a server passes
    the limits it is configured with (``mimo-server --max-frames``), which it also advertises in
    its capabilities, so the wire check and the job check agree."""

    max_frames: int = 2000
    min_side: int = 8
    max_side: int = 2048

    @classmethod
    def from_mapping(cls, limits: dict | None) -> JobLimits:
        """The fields of this class found in ``limits`` (e.g. a server's limit table)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: int(v) for k, v in (limits or {}).items() if k in names})


DEFAULT_LIMITS = JobLimits()


@dataclasses.dataclass
class GenerationJob:
    character: np.ndarray
    codes: np.ndarray
    fps: float = 30.0
    code_mask: np.ndarray | None = None
    scene: np.ndarray | None = None
    occlusion: np.ndarray | None = None
    steps: int | None = None  # None: the mode's preset, set on creation
    cfg: float = 3.5
    seed: int = 42
    context: int | None = None  # None: the mode's preset (mimo/pipeline/presets.py), set on creation
    overlap: int | None = None  # None: the mode's preset, set on creation
    mode: str = "exact"  # a name in mimo.pipeline.presets.PRESETS
    raw: bool = False  # inputs are already the output size: no ROI crop, no compositing
    occlusion_source: np.ndarray | None = None
    roi_size: int = 784
    limits: JobLimits = DEFAULT_LIMITS

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def height(self) -> int:
        return int(self.codes.shape[1])

    @property
    def width(self) -> int:
        return int(self.codes.shape[2])

    @property
    def schedule(self) -> str:
        """The pipeline schedule of this job's mode ("exact" or "fast")."""
        return preset(self.mode).schedule

    def __post_init__(self) -> None:
        # "the mode's default" is resolved once, here: backends always see whole numbers
        if self.mode in PRESETS:
            mode = preset(self.mode)
            if self.steps is None:
                self.steps = mode.steps
            if self.context is None:
                self.context = mode.context
            if self.overlap is None:
                self.overlap = default_overlap(mode, self.context)

    def validate(self) -> None:
        """Raise :class:`~mimo.errors.FieldError` naming the first field that is wrong."""
        lim = self.limits
        _check_image("character", self.character, ndim=3)
        _check_image("codes", self.codes, ndim=4)
        F, H, W = self.codes.shape[:3]
        if not 1 <= F <= lim.max_frames:
            raise FieldError("codes", f"expected 1..{lim.max_frames} frames, got {F}")
        if not (lim.min_side <= H <= lim.max_side and lim.min_side <= W <= lim.max_side):
            raise FieldError("codes", f"frame size {W}x{H} outside {lim.min_side}..{lim.max_side} pixels")
        if self.code_mask is not None:
            _check_shape("code_mask", self.code_mask, (F, H, W), (np.bool_, np.uint8))
        if self.scene is not None:
            _check_shape("scene", self.scene, (F, H, W, 3), (np.uint8,))
        if self.occlusion is not None:
            _check_shape("occlusion", self.occlusion, (F, H, W), (np.uint8,))
            if self.scene is None:
                raise FieldError("occlusion", "needs the scene frames whose pixels it puts in front")
        if self.occlusion_source is not None:
            _check_shape("occlusion_source", self.occlusion_source, (F, H, W, 3), (np.uint8,))
        if not (is_int(self.roi_size) and 64 <= self.roi_size <= lim.max_side and self.roi_size % 8 == 0):
            raise FieldError("roi_size", f"expected a multiple of 8 in 64..{lim.max_side}, got {self.roi_size!r}")
        if not (isinstance(self.fps, (int, float)) and np.isfinite(self.fps) and 0 < self.fps <= 240):
            raise FieldError("fps", f"expected a number in (0, 240], got {self.fps!r}")
        if not (is_int(self.steps) and 1 <= self.steps <= 1000):
            raise FieldError("steps", f"expected an integer in 1..1000, got {self.steps!r}")
        if not (isinstance(self.cfg, (int, float)) and np.isfinite(self.cfg) and 0 <= self.cfg <= 50):
            raise FieldError("cfg", f"expected a number in [0, 50], got {self.cfg!r}")
        if not (is_int(self.seed) and 0 <= self.seed < 2**63):
            raise FieldError("seed", f"expected a non-negative integer, got {self.seed!r}")
        if self.mode not in PRESETS:
            raise FieldError("mode", f"expected one of {', '.join(PRESETS)}, got {self.mode!r}")
        if not (is_int(self.context) and 1 <= self.context <= MAX_CONTEXT):
            raise FieldError("context", f"expected 1..{MAX_CONTEXT} frames per window, got {self.context!r}")
        if not (is_int(self.overlap) and 0 <= self.overlap < self.context):
            raise FieldError("overlap", f"expected 0..{self.context - 1}: fewer frames than a context window "
                                        f"({self.context}), got {self.overlap!r}")
        if type(self.raw) is not bool:
            raise FieldError("raw", f"expected a bool, got {self.raw!r}")


#: the motion modules' positional table: no window may be longer
MAX_CONTEXT = 32


def _check_image(name: str, a: object, ndim: int) -> None:
    if not isinstance(a, np.ndarray):
        raise FieldError(name, f"expected a numpy array, got {type(a).__name__}")
    if a.dtype != np.uint8:
        raise FieldError(name, f"expected dtype uint8, got {a.dtype}")
    if a.ndim != ndim or a.shape[-1] != 3:
        want = "(H, W, 3)" if ndim == 3 else "(F, H, W, 3)"
        raise FieldError(name, f"expected shape {want}, got {a.shape}")
    if 0 in a.shape:
        raise FieldError(name, f"empty array of shape {a.shape}")


def _check_shape(name: str, a: object, shape: tuple, dtypes: tuple) -> None:
    if not isinstance(a, np.ndarray):
        raise FieldError(name, f"expected a numpy array, got {type(a).__name__}")
    if a.shape != shape:
        raise FieldError(name, f"expected shape {shape}, got {a.shape}")
    if a.dtype.type not in dtypes:
        raise FieldError(name, f"expected dtype {' or '.join(d.__name__ for d in dtypes)}, got {a.dtype}")


@dataclasses.dataclass
class JobEvents:
    """Callbacks a backend calls while it works. All optional; all called from the worker thread.

    progress(stage, step, total)   stage is e.g. "encode", "compile" (the first job of a size
                                   compiles the UNet's blocks: minutes), "denoise", "composite"
    frame(index, image)            final frames, in order, each exactly once; image (H, W, 3) uint8
    preview(index, image)          optional low-cost previews while denoising; image (h, w, 3) uint8
    raw_frames(frames)             the synthesis output before quantisation and compositing,
                                   (L, S, S, 3) float32 in [0, 1] (L = F plus ROI span overlaps)
    cancelled() -> bool            polled between steps; True makes the backend raise JobCancelled
    """

    progress: Callable[[str, int, int], None] = lambda stage, step, total: None
    frame: Callable[[int, np.ndarray], None] = lambda index, image: None
    preview: Callable[[int, np.ndarray], None] = lambda index, image: None
    raw_frames: Callable[[np.ndarray], None] = lambda frames: None
    cancelled: Callable[[], bool] = lambda: False

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled()


class JobCancelled(Exception):
    """Raised inside a backend when :meth:`JobEvents.cancelled` says so."""


class Backend(abc.ABC):
    """What the server worker and the CLI call. Implementations: the MIMO pipeline (``"mimo"``,
    needs a weights folder) and the weight-free preview (``"preview"``); both are created by
    ``mimo.pipeline.backends.load_backend(name, weights=None, device=None, dtype=None)`` and keep
    their models loaded between jobs.
    """

    name: str = ""

    @abc.abstractmethod
    def generate(self, job: GenerationJob, events: JobEvents) -> dict:
        """Run one job; call ``events.frame`` for every output frame in order; return stats
        (seconds per stage, peak memory, ...). Raises ``ValueError`` (a
        :class:`~mimo.errors.FieldError` where a job field is at fault) for bad input and
        :class:`JobCancelled` when cancelled."""
