"""Inpainting of the scene plate's holes (pixels no frame shows) with a ``diffusers`` inpainting
pipeline, instead of OpenCV's (the default, :func:`mimo.decompose.scene.inpaint`).

The pipeline (e.g. a Stable Diffusion inpainting folder, anything
``diffusers.AutoPipelineForInpainting`` loads) is loaded with its own ``from_pretrained``
(``local_files_only``: never downloaded here) by Hugging Face id from the local cache or from a
folder; ``mimo weights download DIR --decompose --inpaint-model ID`` fetches one.

The plate is one image, so memory does not depend on the clip's length. Only the region around
the holes is worked on: the holes' bounding box grown by a margin of context, resized so that
its longer side is the model's native size (``unet.config.sample_size × vae_scale_factor``,
512 for SD 1.5; sides rounded to what the UNet accepts), inpainted, resized back, and only the
hole pixels are written into the plate: every pixel some frame showed is kept exactly.
Deterministic from ``seed`` (a ``torch.Generator`` drives the sampler's noise).
"""
from __future__ import annotations

import os

import numpy as np

FLAG = "--inpaint-model"
PROMPT = "an empty place, background only, nobody"
NEGATIVE = "person, people, human, body, figure, text, watermark"


class InpaintModelMissing(ValueError):
    """The inpainting pipeline is neither a folder nor in the local Hugging Face cache, or it did
    not load (``broken``)."""

    def __init__(self, spec: str, reason: str = "", broken: bool = False):
        self.spec = spec
        why = f" ({reason})" if reason else ""
        what = (f"the diffusers inpainting pipeline {spec!r} did not load{why}" if broken else
                f"no diffusers inpainting pipeline {spec!r} here: not a pipeline folder and not in the "
                f"Hugging Face cache{why}")
        super().__init__(f"{FLAG}: {what}; fetch it with `mimo weights download DIR --decompose "
                         f"--inpaint-model ID` and pass --models DIR, or give a pipeline folder")


def check(spec: str) -> None:
    """Raise :class:`InpaintModelMissing` unless ``spec`` is a pipeline folder (with
    ``model_index.json``) or a hub id whose ``model_index.json`` is in the local cache."""
    from .models import missing_reason

    reason = missing_reason(spec, "model_index.json")
    if reason is not None:
        raise InpaintModelMissing(spec, reason)


def _multiple(pipe) -> int:
    """Pixel multiple the pipeline accepts: the VAE's downscale × the UNet's (or 8 × 8)."""
    vae = int(getattr(pipe, "vae_scale_factor", 8))
    unet = getattr(pipe, "unet", None)
    down = 2 ** (len(unet.config.block_out_channels) - 1) if unet is not None else 8
    return vae * down


def _native(pipe) -> int:
    unet = getattr(pipe, "unet", None)
    size = getattr(getattr(unet, "config", None), "sample_size", None)
    if isinstance(size, (list, tuple)):
        size = max(size)
    return int(size or 64) * int(getattr(pipe, "vae_scale_factor", 8))


class DiffusersInpainter:
    """``inpainter(image, holes)``: ``image`` with its ``holes`` repainted by the pipeline.

    Args:
        spec: pipeline folder or hub id (see :func:`check`).
        device: torch device; float16 on CUDA, float32 elsewhere.
        steps: sampler steps; context: margin of context around the holes, as a fraction of
            their bounding box (at least 16 pixels); size: working size of the region's longer
            side (default: the model's native size).
    """

    def __init__(self, spec: str | os.PathLike, device: str = "cpu", seed: int = 0, steps: int = 25,
                 prompt: str = PROMPT, negative_prompt: str = NEGATIVE, context: float = 0.5,
                 size: int | None = None):
        import torch
        from diffusers import AutoPipelineForInpainting

        spec = str(spec)
        check(spec)
        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        try:
            pipe = AutoPipelineForInpainting.from_pretrained(spec, local_files_only=True, dtype=dtype)
        except (OSError, ValueError, KeyError) as e:  # a folder with missing or broken parts
            raise InpaintModelMissing(spec, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}",
                                      broken=True) from None
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe, self.device, self.seed, self.steps = pipe, device, seed, steps
        self.prompt, self.negative_prompt, self.context = prompt, negative_prompt, context
        self.multiple = _multiple(pipe)
        self.size = size or _native(pipe)

    def region(self, holes: np.ndarray) -> tuple[int, int, int, int]:
        """The box [y0, y1) × [x0, x1) worked on: the holes' bounding box and its context."""
        ys, xs = np.nonzero(holes)
        H, W = holes.shape
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        my = max(16, int(self.context * (y1 - y0)))
        mx = max(16, int(self.context * (x1 - x0)))
        return max(0, y0 - my), min(H, y1 + my), max(0, x0 - mx), min(W, x1 + mx)

    def working_size(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) for an h × w region: longer side ``size``, multiples of the model's."""
        s = self.size / max(h, w)
        m = self.multiple
        return max(m, round(h * s / m) * m), max(m, round(w * s / m) * m)

    def __call__(self, image: np.ndarray, holes: np.ndarray) -> np.ndarray:
        """Shapes: image (H, W, 3) uint8, holes (H, W) bool -> (H, W, 3) uint8 (equal off the holes)"""
        import torch
        from PIL import Image

        holes = holes.astype(bool)
        if not holes.any():
            return image.copy()
        y0, y1, x0, x1 = self.region(holes)
        h, w = y1 - y0, x1 - x0
        th, tw = self.working_size(h, w)
        crop = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1])).resize((tw, th), Image.LANCZOS)
        # the mask the model repaints: the holes, resized and grown by a working pixel or two so
        # that resampling never leaves a hole pixel outside it
        mask = Image.fromarray(holes[y0:y1, x0:x1].astype(np.uint8) * 255).resize((tw, th), Image.BILINEAR)
        mask = Image.fromarray(((np.asarray(mask) > 0) * 255).astype(np.uint8))
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        with torch.no_grad():
            res = self.pipe(prompt=self.prompt, negative_prompt=self.negative_prompt, image=crop, mask_image=mask,
                            height=th, width=tw, num_inference_steps=self.steps, generator=generator,
                            output_type="np")
        if any(getattr(res, "nsfw_content_detected", None) or []):
            raise RuntimeError(f"{FLAG}: the pipeline's safety checker blanked the inpainted plate; "
                               "use a pipeline without one or the default OpenCV inpainting")
        painted = np.asarray(res.images[0], np.float32)
        painted = (painted * 255).round().clip(0, 255).astype(np.uint8)
        back = np.asarray(Image.fromarray(painted).resize((w, h), Image.LANCZOS))
        out = image.copy()
        region = out[y0:y1, x0:x1]
        sel = holes[y0:y1, x0:x1]
        region[sel] = back[sel]
        return out
