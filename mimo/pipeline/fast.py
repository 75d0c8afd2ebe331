"""Fast mode of :class:`~mimo.pipeline.pipeline.MimoPipeline`: same networks and weights, a faster
schedule. Every way it departs from exact mode is listed here (and measured by
``benchmarks/pipeline.py --compare``):

1. Windows do not wrap around the clip end (``closed_loop=False``; the last window is shifted
   back), and default to 32 frames (the motion modules' full positional range) instead of 24,
   so a 32-frame clip is one window: no frame is evaluated twice per step.
2. Several windows share one UNet call when they are small (:func:`windows_per_call`), with the
   CFG halves, CLIP rows and reference rows laid out per window: rows ``[u_1, c_1, u_2, c_2, ...]``.
3. The reference bank is written from the conditional row only and kept in the model dtype
   (exact mode writes two rows and rounds the bank to fp16, as the official code does).
4. bf16 by default on CUDA; latents, the window sum and the sampler run in float32.
5. Feed-forwards and reference-reading attentions run in chunks of about :data:`CHUNK_TOKENS`
   tokens (no value changes; bounds memory); pose-guider features are computed once per frame and
   kept on the GPU up to :data:`POSE_GPU_BUDGET` bytes, beyond that in pinned host memory, copied
   in per window; the VAE encodes :data:`ENCODE_CHUNK` and decodes :data:`DECODE_CHUNK` frames at
   a time.
6. Optional previews every N steps: the sampler's predicted clean latent of chosen frames,
   decoded by the VAE at half the latent size.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mimo.models.blocks import ReferenceBank, token_chunking

from .schedule import context_windows

FAST_CONTEXT = 32
#: latent pixels (frames x h x w) per UNet call before another window is stacked on: one 32-frame
#: window at 784^2 (98^2 latents) already fills an H200, smaller windows are batched up to this.
TOKEN_BUDGET = 32 * 98 * 98
CHUNK_TOKENS = 1 << 16
POSE_GPU_BUDGET = 1 << 28
DECODE_CHUNK = 4
#: VAE encoder activations at full resolution are the largest of the job (~0.8 GB per frame at 784²)
ENCODE_CHUNK = 2


def windows_per_call(window_frames: int, height: int, width: int, budget: int = TOKEN_BUDGET) -> int:
    """How many windows of ``window_frames`` frames at latent size height x width share one call."""
    return max(1, budget // (window_frames * height * width))


class FeatureStore:
    """Per-frame features (F, C, h, w) kept on the GPU when they fit ``gpu_budget`` bytes, else in
    pinned host memory; :meth:`take` returns frames ``start:stop`` on the device."""

    def __init__(self, frames: int, shape: tuple, dtype: torch.dtype, device: torch.device,
                 gpu_budget: int | None = None):
        gpu_budget = POSE_GPU_BUDGET if gpu_budget is None else gpu_budget
        nbytes = frames * int(np.prod(shape)) * torch.finfo(dtype).bits // 8
        self.device = device
        self.on_device = device.type != "cuda" or nbytes <= gpu_budget
        where = dict(device=device) if self.on_device else dict(device="cpu", pin_memory=True)
        self.data = torch.empty((frames, *shape), dtype=dtype, **where)

    def put(self, start: int, values: torch.Tensor) -> None:
        self.data[start:start + values.shape[0]].copy_(values, non_blocking=False)

    def take(self, start: int, stop: int) -> torch.Tensor:
        return self.data[start:stop].to(self.device, non_blocking=True)


def denoise(pipe, latents: torch.Tensor, scene_latents: torch.Tensor, pose: FeatureStore,
            clip: torch.Tensor, bank: ReferenceBank, timesteps, windows: list[list[int]],
            guidance_scale: float, per_call: int, on_step: Callable, check_cancel: Callable) -> torch.Tensor:
    """The fast denoising loop over non-wrapping windows, ``per_call`` windows per UNet call.

    Shapes:
        latents, scene_latents (1, 4, F, h, w) float32 / model dtype; clip (1, 1, D)
        windows: contiguous index ranges of equal length f; returns latents (1, 4, F, h, w) float32
    """
    dtype, device = pipe.dtype, pipe.device
    num_frames = latents.shape[2]
    count = torch.zeros((1, 1, num_frames, 1, 1), dtype=torch.float32, device=device)
    for w in windows:
        count[:, :, w[0]:w[-1] + 1] += 1
    groups = [windows[i:i + per_call] for i in range(0, len(windows), per_call)]
    sharding = getattr(pipe, "sharding", None)  # several GPUs: mimo/pipeline/distributed.py
    if sharding is not None:
        groups = sharding.mine(groups)
    for step, t in enumerate(timesteps):
        v_sum = torch.zeros((2,) + latents.shape[1:], dtype=torch.float32, device=device)
        for group in groups:
            check_cancel()
            spans = [(w[0], w[-1] + 1) for w in group]
            n = len(spans)
            x = torch.cat([torch.cat([latents[:, :, a:b].to(dtype), scene_latents[:, :, a:b]], dim=1)
                           for a, b in spans])                                   # (n, 8, f, h, w)
            pose_w = torch.stack([pose.take(a, b).transpose(0, 1) for a, b in spans])  # (n, C0, f, h, w)
            x = pipe.scheduler.scale_model_input(x, t)
            rows = torch.cat([torch.zeros_like(clip), clip]).repeat(n, 1, 1)     # (2n, 1, D)
            with token_chunking(CHUNK_TOKENS):
                v = pipe.denoising_unet(x.repeat_interleave(2, dim=0), t, rows,
                                        pose_cond=pose_w.repeat_interleave(2, dim=0), reference=bank,
                                        reference_rows=[False, True] * n)      # (2n, 4, f, h, w)
            v = v.float().view(n, 2, *v.shape[1:])
            for k, (a, b) in enumerate(spans):
                v_sum[:, :, a:b] += v[k]
        if sharding is not None:
            v_sum = sharding.reduce_sum(v_sum)
        v = v_sum / count
        v_uncond, v_cond = v.chunk(2)
        v = v_uncond + guidance_scale * (v_cond - v_uncond)
        out = pipe.scheduler.step(v, t, latents, eta=0.0)
        latents = out.prev_sample
        on_step(step, int(t), latents, out.pred_original_sample)
    return latents


def encode_pose(pipe, codes_chunks, store: FeatureStore) -> None:
    """Pose-guider features of every code frame into ``store``, one chunk at a time."""
    start = 0
    for chunk in codes_chunks:                                                # (n, 3, H, W) in [0, 1]
        feats = pipe.pose_guider(chunk.to(pipe.device, pipe.dtype).transpose(0, 1)[None])
        store.put(start, feats[0].transpose(0, 1))                            # (n, C0, h, w)
        start += chunk.shape[0]


@torch.no_grad()
def preview_images(pipe, x0: torch.Tensor, frames: list[int]) -> list[np.ndarray]:
    """Cheap previews: the predicted clean latent of ``frames``, halved, decoded by the VAE.

    Shapes:
        x0 (1, 4, F, h, w) -> list of (≈H/2, ≈W/2, 3) uint8
    """
    from .pipeline import VAE_SCALE

    z = x0[0, :, frames].transpose(0, 1).to(pipe.dtype) / VAE_SCALE           # (k, 4, h, w)
    z = F.interpolate(z, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
    x = pipe.vae.decode(z).sample
    x = ((x / 2 + 0.5).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return list(x)


def fast_windows(num_frames: int, size: int, overlap: int) -> list[list[int]]:
    """Non-wrapping windows (contiguous ranges, all of ``min(size, num_frames)`` frames)."""
    return context_windows(num_frames, size, overlap, closed_loop=False)
