"""Synthesis backends behind the job contract of :mod:`mimo.pipeline.job`.

``load_backend("preview")`` needs no weights and no GPU: it lays the code-coloured body over the
scene and puts the occlusion layer back on top, so a shot can be blocked out on any machine.
``load_backend("mimo", weights=DIR)`` loads the MIMO networks once and keeps them for every job.

Backends are registered once, in :data:`BACKENDS` (name -> :class:`BackendKind`): ``mimo-server
--backend`` offers these names, and its capabilities list the ones it loaded. To add one, see
docs/ARCHITECTURE.md ("Add a backend").
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from .job import Backend, GenerationJob, JobEvents


@dataclasses.dataclass(frozen=True)
class BackendKind:
    """A registered backend: ``factory(weights, device, dtype, compile, compile_vae, low_memory)``
    makes one (backends without a low-memory mode ignore the flag)."""

    name: str
    summary: str
    needs_weights: bool
    factory: Callable[..., Backend]


def _preview(weights, device, dtype, compile, compile_vae, low_memory) -> Backend:
    return PreviewBackend()


def _mimo(weights, device, dtype, compile, compile_vae, low_memory) -> Backend:
    from .mimo_backend import MimoBackend

    return MimoBackend(weights, device=device, dtype=dtype, compile=compile, compile_vae=compile_vae,
                       low_memory=low_memory)


BACKENDS: dict[str, BackendKind] = {k.name: k for k in (
    BackendKind("preview", "weight-free: the code-coloured body over the scene, occluders on top", False, _preview),
    BackendKind("mimo", "the MIMO networks (needs the official weights)", True, _mimo),
)}
#: ``--compile`` choices of the CLIs -> the ``compile`` argument of :func:`load_backend`
COMPILE_CHOICES = {"auto": None, "on": True, "off": False}


def load_backend(name: str, weights: str | None = None, device: str | None = None,
                 dtype: str | None = None, compile: bool | None = None,
                 compile_vae: bool = True, low_memory: bool = False) -> Backend:
    """Create a registered backend by name (:data:`BACKENDS`): ``"preview"`` (weight-free) or
    ``"mimo"`` (needs ``weights``).

    ``device`` is a torch device string (default: cuda when available, else cpu); ``dtype`` one of
    ``"fp16"``, ``"bf16"``, ``"fp32"`` (default fp16 on CUDA, fp32 on CPU); ``compile`` whether to
    compile the denoising UNet's blocks (None: where it can run, see ``MimoPipeline.from_pretrained``),
    ``compile_vae`` whether compiling also covers the VAE, ``low_memory`` whether networks used once
    per job leave the GPU between uses and windows shrink to about 8 GB (mimo/pipeline/memory.py).
    """
    kind = BACKENDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ValueError(f"name: expected one of {', '.join(BACKENDS)}, got {name!r}")
    if kind.needs_weights and weights is None:
        raise ValueError(f"weights: the {name!r} backend needs a weights folder "
                         "(run `mimo weights download`, or `mimo weights make-tiny` for tests)")
    return kind.factory(weights, device, dtype, compile, compile_vae, low_memory)


def composite_preview(codes: np.ndarray, code_mask: np.ndarray | None = None,
                      scene: np.ndarray | None = None, occlusion: np.ndarray | None = None,
                      occluder_source: np.ndarray | None = None) -> np.ndarray:
    """One preview frame (or a stack): scene (white if None), body codes where ``code_mask``, then
    ``occluder_source`` pixels (default: the scene's) put back in front with alpha ``occlusion``/255,
    rounded to nearest.

    Shapes:
        codes (..., H, W, 3) uint8; code_mask (..., H, W) bool (None: any code channel non-zero);
        scene, occluder_source (..., H, W, 3) uint8; occlusion (..., H, W) uint8;
        returns (..., H, W, 3) uint8
    """
    mask = np.any(codes != 0, axis=-1) if code_mask is None else code_mask.astype(bool)
    bg = np.full_like(codes, 255) if scene is None else scene
    out = np.where(mask[..., None], codes, bg)
    if occlusion is not None:
        o = occlusion.astype(np.uint32)[..., None]
        src = bg if occluder_source is None else occluder_source
        out = ((out.astype(np.uint32) * (255 - o) + src.astype(np.uint32) * o + 127) // 255).astype(np.uint8)
    return out


class PreviewBackend(Backend):
    """Weight-free backend: frames = :func:`composite_preview` of each job frame, at the codes' size."""

    name = "preview"

    def generate(self, job: GenerationJob, events: JobEvents) -> dict:
        job.validate()
        t0 = time.perf_counter()
        F = job.num_frames
        for i in range(F):
            events.check_cancelled()
            frame = composite_preview(
                job.codes[i],
                None if job.code_mask is None else job.code_mask[i],
                None if job.scene is None else job.scene[i],
                None if job.occlusion is None else job.occlusion[i],
                None if job.occlusion_source is None else job.occlusion_source[i])
            events.frame(i, frame)
            events.progress("composite", i + 1, F)
        return {"backend": self.name, "frames": F, "seconds": {"composite": time.perf_counter() - t0}}
