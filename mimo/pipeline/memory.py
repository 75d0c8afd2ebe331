"""Low-memory mode of :class:`~mimo.pipeline.pipeline.MimoPipeline`: the target is a peak of
:data:`LOW_MEMORY_BUDGET` GPU bytes at 784² for a clip of any length.

* :func:`on_device`: the networks used once per job (CLIP, VAE, reference UNet, pose guider) wait
  on the CPU and visit the GPU only while they run; only the denoising UNet stays.
* :func:`low_memory_frames`: how many frames a fast-schedule window may hold when each CFG half is
  its own UNet call (1 row), from an estimate of a call's activations (:data:`ACTIVATION_WIDTHS`)
  and the denoising UNet's own bytes. Exact mode keeps its windows (its numerics are the official
  ones); low-memory mode then only offloads and decodes one frame per VAE call.
* Feature reuse (the ``draft`` preset) keeps no cached feature on the GPU between UNet calls
  (:class:`mimo.pipeline.shortcuts.FeatureCache` with a budget of 0).

The activation estimate is an upper bound written from the UNet's structure (skips kept for the
up path, the widest up-block input, a transformer's working tensors, chunked feed-forwards), not a
measurement: ``benchmarks/presets.py --part memory`` measures the peak on the GPU.
"""
from __future__ import annotations

import contextlib

import torch

#: GPU bytes a low-memory job aims to stay under
LOW_MEMORY_BUDGET = 8 << 30
#: peak activation bytes of one UNet call, per frame-row, in units of (level-0 width C0) x h x w
#: elements: skips ~5.4 C0, the last up block's input 3 C0, a spatial transformer's and a motion
#: module's working tensors ~10 C0, the reference keys/values and the chunked feed-forward ~4 C0
ACTIVATION_WIDTHS = 23
#: headroom for the allocator's fragmentation, latents, the bank and the pose store
HEADROOM = 1 << 30


@contextlib.contextmanager
def on_device(net: torch.nn.Module, device: torch.device, low_memory: bool):
    """``net`` on ``device`` inside the block. In low-memory mode a network that was elsewhere is
    moved in and, on leaving, back to the CPU (the cache is emptied so the next network gets the
    room); nested uses move nothing twice. Otherwise nothing happens."""
    if not low_memory or device.type == "cpu":
        yield net
        return
    param = next(net.parameters(), None)
    moved = param is not None and param.device != device
    if moved:
        net.to(device)
    try:
        yield net
    finally:
        if moved:
            net.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()


def host_empty(shape: tuple, dtype: torch.dtype, pinned: bool) -> torch.Tensor:
    """An empty host tensor: pinned (asynchronous copies to and from the GPU) when asked and the
    system grants it, else ordinary memory (the copies then wait, with the same values)."""
    if pinned:
        try:
            return torch.empty(shape, dtype=dtype, pin_memory=True)
        except RuntimeError:
            pass
    return torch.empty(shape, dtype=dtype)


def network_bytes(net: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in net.parameters())


def low_memory_frames(unet: torch.nn.Module, height: int, width: int, dtype: torch.dtype,
                      budget: int = LOW_MEMORY_BUDGET) -> int:
    """Frames per window (one CFG half per call) that fit ``budget`` with the UNet resident; at
    least 1. ``height``, ``width``: the latent size.

    >>> # SD1.5 size, bf16, 98² latents: (8 GiB - 2.45 GiB - 1 GiB) / (23 * 320 * 98² * 2 B) ≈ 34
    """
    c0 = unet.config.block_out_channels[0]
    per_frame = ACTIVATION_WIDTHS * c0 * height * width * torch.finfo(dtype).bits // 8
    free = budget - network_bytes(unet) - HEADROOM
    return max(1, free // per_frame)
