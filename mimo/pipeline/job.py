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
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Callable

import numpy as np

MAX_FRAMES = 2000
MAX_SIDE = 2048


@dataclasses.dataclass
class GenerationJob:
    character: np.ndarray
    codes: np.ndarray
    fps: float = 30.0
    code_mask: np.ndarray | None = None
    scene: np.ndarray | None = None
    occlusion: np.ndarray | None = None
    steps: int = 25
    cfg: float = 3.5
    seed: int = 42
    context: int | None = None  # None: 24 in exact mode, 32 in fast mode
    overlap: int = 4
    mode: str = "exact"  # "exact" | "fast"
    raw: bool = False  # inputs are already the output size: no ROI crop, no compositing
    occlusion_source: np.ndarray | None = None
    roi_size: int = 784

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def height(self) -> int:
        return int(self.codes.shape[1])

    @property
    def width(self) -> int:
        return int(self.codes.shape[2])

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is wrong."""
        _check_image("character", self.character, ndim=3)
        _check_image("codes", self.codes, ndim=4)
        F, H, W = self.codes.shape[:3]
        if not 1 <= F <= MAX_FRAMES:
            raise ValueError(f"codes: expected 1..{MAX_FRAMES} frames, got {F}")
        if not (8 <= H <= MAX_SIDE and 8 <= W <= MAX_SIDE):
            raise ValueError(f"codes: frame size {W}x{H} outside 8..{MAX_SIDE} pixels")
        if self.code_mask is not None:
            _check_shape("code_mask", self.code_mask, (F, H, W), (np.bool_, np.uint8))
        if self.scene is not None:
            _check_shape("scene", self.scene, (F, H, W, 3), (np.uint8,))
        if self.occlusion is not None:
            _check_shape("occlusion", self.occlusion, (F, H, W), (np.uint8,))
            if self.scene is None:
                raise ValueError("occlusion: needs the scene frames whose pixels it puts in front")
        if self.occlusion_source is not None:
            _check_shape("occlusion_source", self.occlusion_source, (F, H, W, 3), (np.uint8,))
        if not (isinstance(self.roi_size, int) and 64 <= self.roi_size <= MAX_SIDE and self.roi_size % 8 == 0):
            raise ValueError(f"roi_size: expected a multiple of 8 in 64..{MAX_SIDE}, got {self.roi_size!r}")
        if not (isinstance(self.fps, (int, float)) and np.isfinite(self.fps) and 0 < self.fps <= 240):
            raise ValueError(f"fps: expected a number in (0, 240], got {self.fps!r}")
        if not (isinstance(self.steps, int) and 1 <= self.steps <= 1000):
            raise ValueError(f"steps: expected an integer in 1..1000, got {self.steps!r}")
        if not (isinstance(self.cfg, (int, float)) and np.isfinite(self.cfg) and 0 <= self.cfg <= 50):
            raise ValueError(f"cfg: expected a number in [0, 50], got {self.cfg!r}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**63):
            raise ValueError(f"seed: expected a non-negative integer, got {self.seed!r}")
        if not (self.context is None or (isinstance(self.context, int) and 1 <= self.context <= 32)):
            raise ValueError(f"context: expected 1..32 frames per window, got {self.context!r}")
        context = self.context or 24
        if not (isinstance(self.overlap, int) and 0 <= self.overlap < context):
            raise ValueError(f"overlap: expected 0..context-1, got {self.overlap!r}")
        if self.mode not in ("exact", "fast"):
            raise ValueError(f"mode: expected 'exact' or 'fast', got {self.mode!r}")


def _check_image(name: str, a: object, ndim: int) -> None:
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {a.dtype}")
    if a.ndim != ndim or a.shape[-1] != 3:
        want = "(H, W, 3)" if ndim == 3 else "(F, H, W, 3)"
        raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
    if 0 in a.shape:
        raise ValueError(f"{name}: empty array of shape {a.shape}")


def _check_shape(name: str, a: object, shape: tuple, dtypes: tuple) -> None:
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if a.dtype.type not in dtypes:
        raise ValueError(f"{name}: expected dtype {' or '.join(d.__name__ for d in dtypes)}, got {a.dtype}")


@dataclasses.dataclass
class JobEvents:
    """Callbacks a backend calls while it works. All optional; all called from the worker thread.

    progress(stage, step, total)   stage is e.g. "encode", "compile" (the first job of a size
                                   compiles the UNet's blocks: minutes), "denoise", "composite"
    frame(index, image)            final frames, in order, each exactly once; image (H, W, 3) uint8
    preview(index, image)          optional low-cost previews while denoising; image (h, w, 3) uint8
    raw_frames(frames)             the synthesis output before quantisation and compositing,
                                   (L, S, S, 3) float32 in [0, 1] (L = F plus ROI clip overlaps)
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
        (seconds per stage, peak memory, ...). Raises ``ValueError`` for bad input and
        :class:`JobCancelled` when cancelled."""
