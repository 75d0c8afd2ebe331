"""Fast mode of :class:`~mimo.pipeline.pipeline.MimoPipeline`: same networks and weights, a faster
schedule. Every way it departs from exact mode is listed here (and measured by
``benchmarks/pipeline.py --compare``):

1. Windows do not wrap around the clip end (``closed_loop=False``; the last window is shifted
   back), and default to 32 frames (the motion modules' full positional range) instead of 24,
   so a 32-frame clip is one window: no frame is evaluated twice per step.
2. Several windows share one UNet call when they are small (:func:`windows_per_call_for`), with the
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

A preset's :class:`~mimo.pipeline.presets.Shortcuts` add, each only when switched on (all off,
this is fast mode; implemented in :mod:`mimo.pipeline.shortcuts` and :mod:`mimo.models.blocks`):

7. ``solver``: DPM-Solver++ 2M or UniPC instead of DDIM (fewer steps for the same trajectory).
8. ``guidance_interval``: the unconditional half is computed only for timesteps inside the
   interval; elsewhere v = v_cond.
9. ``reuse_interval``: between full steps only the shallowest blocks run; the deeper features
   come from the last full step of the same window group (DeepCache).
10. ``kv_pool``: the spatial self-attentions at the highest resolution attend to keys and values
   average-pooled k x k (own tokens every call, the reference tokens once per job).
11. ``attention``: FlashAttention-3/-4 kernels for the spatial self-attentions (same math).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mimo.models.blocks import token_chunking
from mimo.models.loading import VAE_SCALING_FACTOR as VAE_SCALE

from .frames import frame_chunks
from .memory import host_empty, low_memory_frames
from .presets import Shortcuts
from .schedule import DenoiseInputs, Plan, Schedule, context_windows
from .shortcuts import FeatureCache, make_sampler, pool_bank, predicted_x0

FAST_CONTEXT = 32
#: latent pixels (frames x h x w) per UNet call before another window is stacked on: one 32-frame
#: window at 784^2 (98^2 latents) already fills an H200, smaller windows are batched up to this.
TOKEN_BUDGET = 32 * 98 * 98
CHUNK_TOKENS = 1 << 16
POSE_GPU_BUDGET = 1 << 28
DECODE_CHUNK = 4
#: VAE encoder activations at full resolution are the largest of the job (~0.8 GB per frame at 784²)
ENCODE_CHUNK = 2


def windows_per_call_for(window_frames: int, height: int, width: int, budget: int = TOKEN_BUDGET) -> int:
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
        self.data = (torch.empty((frames, *shape), dtype=dtype, device=device) if self.on_device
                     else host_empty((frames, *shape), dtype, pinned=True))

    def put(self, start: int, values: torch.Tensor) -> None:
        self.data[start:start + values.shape[0]].copy_(values, non_blocking=False)

    def take(self, start: int, stop: int) -> torch.Tensor:
        return self.data[start:stop].to(self.device, non_blocking=True)


class FastSchedule(Schedule):
    """Fast mode (the departures 1-6 above) plus the :class:`~mimo.pipeline.presets.Shortcuts` of
    a preset (7-11 above); with every shortcut off this is fast mode as it was."""

    name = "fast"
    default_context = FAST_CONTEXT

    def __init__(self, shortcuts: Shortcuts | None = None):
        self.shortcuts = shortcuts or Shortcuts()

    def latent_dtype(self, pipe) -> torch.dtype:
        return torch.float32

    def plan(self, pipe, num_frames, height, width, context, overlap, windows_per_call) -> Plan:
        encode, decode = ENCODE_CHUNK, DECODE_CHUNK
        if pipe.low_memory:  # windows that fit the budget, one window per call, one VAE frame
            context = min(context, low_memory_frames(pipe.denoising_unet, height // 8, width // 8,
                                                     pipe.dtype, pipe.memory_budget))
            overlap, windows_per_call, encode, decode = min(overlap, context - 1), 1, 1, 1
        windows = fast_windows(num_frames, context, overlap)
        per_call = min(len(windows), windows_per_call or windows_per_call_for(len(windows[0]), height // 8,
                                                                             width // 8))
        return Plan(windows=windows, per_call=per_call, encode_chunk=encode, decode_chunk=decode,
                    layout=("fast", len(windows[0]), per_call, height, width) + self.shortcuts.key
                    + (("low-memory",) if pipe.low_memory else ()))

    def reference(self, pipe, ref_latent, clip):
        """The conditional row only, kept in the model dtype (pooled once with ``kv_pool``)."""
        bank = pipe.reference_unet.write(ref_latent, 0, clip)
        if self.shortcuts.kv_pool > 1:
            bank = pool_bank(bank, ref_latent.shape[-2:], self.shortcuts.kv_pool)
        return bank

    def pose(self, pipe, codes, width, height) -> FeatureStore:
        store = FeatureStore(len(codes), (pipe.pose_guider.embedding_channels, height // 8, width // 8),
                             pipe.dtype, pipe.device)
        encode_pose(pipe, frame_chunks(codes, width, height, False, 16), store)
        return store

    def guided(self, t: int, guidance_scale: float) -> bool:
        """Whether step ``t`` runs both CFG halves (always, unless a guidance interval is set)."""
        gi = self.shortcuts.guidance_interval
        return gi is None or gi[0] <= int(t) <= gi[1]

    def denoise(self, pipe, inputs: DenoiseInputs, plan: Plan, steps: int, guidance_scale: float,
                on_step: Callable, check_cancel: Callable) -> torch.Tensor:
        """The fast denoising loop over non-wrapping windows, ``plan.per_call`` windows per UNet call.

        Shapes:
            inputs.latents (1, 4, F, h, w) float32; inputs.scene_latents model dtype; clip (1, 1, D)
            plan.windows: contiguous index ranges of equal length f; returns latents (1, 4, F, h, w) float32
        """
        sampler = make_sampler(self.shortcuts.solver)  # a fresh one: multistep solvers keep history
        sampler.set_timesteps(steps, device=pipe.device)
        latents = inputs.latents
        num_frames = latents.shape[2]
        count = torch.zeros((1, 1, num_frames, 1, 1), dtype=torch.float32, device=pipe.device)
        for w in plan.windows:
            count[:, :, w[0]:w[-1] + 1] += 1
        cache = FeatureCache(self.shortcuts.reuse_interval, pipe.device, groups=-(-len(plan.windows) // plan.per_call),
                             device_budget=0 if pipe.low_memory else None)  # low memory: none stays
        for step, t in enumerate(sampler.timesteps):
            guided = self.guided(t, guidance_scale)
            v = self.window_sums(pipe, sampler, latents, inputs, plan, t, guided, cache.mode(step, guided),
                                 check_cancel) / count
            if guided:
                v_uncond, v_cond = v.chunk(2)
                v = v_uncond + guidance_scale * (v_cond - v_uncond)
            if self.shortcuts.solver == "ddim":
                out = sampler.step(v, t, latents, eta=0.0)
                x0 = out.pred_original_sample
            else:
                x0 = predicted_x0(sampler, v, t, latents)
                out = sampler.step(v, t, latents)
            latents = out.prev_sample
            on_step(step, int(t), latents, x0)
        return latents

    def window_sums(self, pipe, sampler, latents, inputs: DenoiseInputs, plan: Plan, t, guided: bool,
                    cache_mode, check_cancel) -> torch.Tensor:
        """The per-window accumulation of one step: every window's v added, in float32, over the
        frames it covers (the window counts are fixed, see :meth:`denoise`; this sum is what a
        split across processes reduces).

        Shapes:
            returns v_sum (2, 4, F, h, w) [uncond; cond] when guided, else (1, 4, F, h, w) [cond]
        """
        dtype, clip = pipe.dtype, inputs.clip
        halves = 2 if guided else 1
        v_sum = torch.zeros((halves,) + latents.shape[1:], dtype=torch.float32, device=pipe.device)
        groups = [plan.windows[i:i + plan.per_call] for i in range(0, len(plan.windows), plan.per_call)]
        indexed = list(enumerate(groups))  # the group index keys the feature-reuse cache
        if pipe.sharding is not None:  # several GPUs: this rank's block of groups (distributed.py)
            indexed = pipe.sharding.mine(indexed)
        for g, group in indexed:
            check_cancel()
            spans = [(w[0], w[-1] + 1) for w in group]
            n = len(spans)
            x = torch.cat([torch.cat([latents[:, :, a:b].to(dtype), inputs.scene_latents[:, :, a:b]], dim=1)
                           for a, b in spans])                                   # (n, 8, f, h, w)
            pose_w = torch.stack([inputs.pose.take(a, b).transpose(0, 1) for a, b in spans])  # (n, C0, f, h, w)
            x = sampler.scale_model_input(x, t)
            if guided:  # rows [u_1, c_1, u_2, c_2, ...]
                rows = torch.cat([torch.zeros_like(clip), clip]).repeat(n, 1, 1)  # (2n, 1, D)
                x, pose_w = x.repeat_interleave(2, dim=0), pose_w.repeat_interleave(2, dim=0)
                reads = [False, True] * n
            else:       # the conditional rows only
                rows, reads = clip.repeat(n, 1, 1), [True] * n
            with token_chunking(CHUNK_TOKENS):
                if pipe.low_memory and guided:  # each CFG half its own call (n = 1 here)
                    v = torch.cat([pipe.denoising_unet(x[k:k + 1], t, rows[k:k + 1], pose_cond=pose_w[k:k + 1],
                                                       reference=inputs.bank, reference_rows=reads[k:k + 1],
                                                       **self._unet_options(cache_mode, (g, k)))
                                   for k in range(2 * n)])
                else:
                    v = pipe.denoising_unet(x, t, rows, pose_cond=pose_w, reference=inputs.bank,
                                            reference_rows=reads, **self._unet_options(cache_mode, g))
            v = v.float().view(n, halves, *v.shape[1:])                          # (n, halves, 4, f, h, w)
            for k, (a, b) in enumerate(spans):
                v_sum[:, :, a:b] += v[k]
        if pipe.sharding is not None:  # the other ranks' groups
            v_sum = pipe.sharding.reduce_sum(v_sum)
        return v_sum

    def _unet_options(self, cache_mode, group) -> dict:
        """Keyword arguments of the shortcuts that act inside the UNet (none when all are off)."""
        s, options = self.shortcuts, {}
        if s.kv_pool > 1:
            options["kv_pool"] = s.kv_pool
        if s.attention != "sdpa":
            options["attention_backend"] = s.attention
        if cache_mode is not None:
            options["deep_cache"] = cache_mode.slot(group)
        return options


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
    # halved in fp32: antialiased resizing has no half-precision kernel on CPU
    z = x0[0, :, frames].transpose(0, 1).float() / VAE_SCALE                   # (k, 4, h, w)
    z = F.interpolate(z, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
    x = pipe.vae.decode(z.to(pipe.dtype)).sample
    x = ((x / 2 + 0.5).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return list(x)


def fast_windows(num_frames: int, size: int, overlap: int) -> list[list[int]]:
    """Non-wrapping windows (contiguous ranges, all of ``min(size, num_frames)`` frames)."""
    return context_windows(num_frames, size, overlap, closed_loop=False)


#: the old name, kept for callers
windows_per_call = windows_per_call_for
