"""Regional ``torch.compile`` of the denoising UNet's repeated blocks (CUDA).

About a quarter of a UNet call is elementwise work between the big kernels: GroupNorm then SiLU,
bias adds after every convolution, LayerNorms, GEGLU's split-GELU-multiply, residual adds and
layout copies. Each is a separate pass over activations of up to gigabytes. Compiling each
ResNet, spatial transformer and motion module (not the whole UNet, whose one big graph took
minutes to compile) lets inductor fuse these passes, while matrix products, convolutions and
attention stay on cuBLAS, cuDNN and SDPA. Parameters and state-dict keys are unchanged, since
``nn.Module.compile`` compiles in place. The math is unchanged too: fused kernels keep their
intermediates in float32, so results move by rounding only.

Shapes are static: each new size or window layout compiles again (cached on disk like the
first). The pipeline therefore runs clips shorter than one window eagerly, see
``MimoPipeline.__call__`` step 6. :func:`compile_vae` does the same for the VAE's encoder and
decoder (the GroupNorm+SiLU passes at full resolution are most of their eager time).
"""
from __future__ import annotations

import contextlib
import importlib.util

import torch
from torch import nn

from .blocks import MotionModule, ResnetBlock, SpatialTransformer

#: Module kinds compiled by :func:`compile_blocks`.
BLOCK_TYPES = (ResnetBlock, SpatialTransformer, MotionModule)
#: dynamo settings for compiled blocks. One code object serves all instances of a block kind and
#: each instance's own constants (its reference-bank key, widths) take one cache entry, so the
#: default limit of 8 entries would leave most blocks eager; a block that fails to compile runs
#: eagerly (with a warning) instead of failing the call. torch keeps config overrides per thread,
#: so :func:`run_compiled` applies these in the thread that runs the UNet (a server worker).
DYNAMO_SETTINGS = {name: value for name, value in dict(
    recompile_limit=256, accumulated_recompile_limit=4096, suppress_errors=True).items()
    if hasattr(torch._dynamo.config, name)}  # names present in this torch


def can_compile(device: torch.device | str) -> tuple[bool, str]:
    """Whether :func:`compile_blocks` can run on ``device``, and why not (inductor needs Triton on CUDA)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False, f"block compilation is for CUDA devices, not {device.type}"
    if importlib.util.find_spec("triton") is None:
        return False, "block compilation needs the triton package (pip install triton)"
    return True, ""


def compile_blocks(unet: nn.Module, dynamic: bool | None = False) -> int:
    """Compile every ResNet, spatial transformer and motion module of ``unet`` in place.

    Compilation happens on the first call with new shapes (72-99 s for SD1.5 size at 784² on an
    H200; inductor keeps the kernels in its on-disk cache, so a later process with the same
    shapes is ready in about 20 s). ``dynamic=False`` (default) compiles static shapes: symbolic
    shapes compiled slower and, with fast mode's chunk arithmetic, blew up sympy. A block that
    fails to compile runs eagerly (with a warning) instead of failing the call. Returns the
    number of blocks wrapped. Idempotent.
    """
    ok, why = can_compile(next(unet.parameters()).device)
    if not ok:
        raise ValueError(why)
    for name, value in DYNAMO_SETTINGS.items():  # for callers in this thread (benchmarks, tests)
        setattr(torch._dynamo.config, name, value)
    count = 0
    for module in unet.modules():
        if isinstance(module, BLOCK_TYPES):
            if getattr(module, "_compiled_call_impl", None) is None:
                module.compile(dynamic=dynamic)
            count += 1
    return count


def compile_vae(vae: nn.Module) -> None:
    """Compile the VAE's ``encoder`` and ``decoder`` in place (static shapes; keys unchanged).

    On an H200 at 784² (bf16) this takes the encoder from 20.6 to 12.6 ms per frame (2-frame
    chunks) and the decoder from 43.1 to 27.6 ms (4-frame chunks), for about 25 s of compilation
    each on a first run (``benchmarks/vae.py``). Callers keep the chunk shapes fixed (the pipeline
    pads a short last chunk) so a clip's length never compiles again. Idempotent.
    """
    ok, why = can_compile(next(vae.parameters()).device)
    if not ok:
        raise ValueError(why.replace("block compilation", "VAE compilation"))
    for module in (vae.encoder, vae.decoder):
        if getattr(module, "_compiled_call_impl", None) is None:
            module.compile(dynamic=False)


def is_vae_compiled(vae: nn.Module) -> bool:
    """Whether :func:`compile_vae` wrapped ``vae``'s decoder."""
    return getattr(vae.decoder, "_compiled_call_impl", None) is not None


def is_compiled(unet: nn.Module) -> bool:
    """Whether :func:`compile_blocks` wrapped ``unet``'s blocks."""
    return any(getattr(m, "_compiled_call_impl", None) is not None
               for m in unet.modules() if isinstance(m, BLOCK_TYPES))


@contextlib.contextmanager
def run_compiled(enabled: bool):
    """Inside, compiled blocks run compiled with :data:`DYNAMO_SETTINGS` (``enabled``, in any
    thread) or eagerly (no compilation triggered)."""
    if enabled:
        with torch._dynamo.config.patch(**DYNAMO_SETTINGS):
            yield
        return
    with torch.compiler.set_stance("force_eager"):
        yield


def uncompile_blocks(unet: nn.Module) -> None:
    """Undo :func:`compile_blocks` (blocks run eagerly again)."""
    for module in unet.modules():
        if isinstance(module, BLOCK_TYPES):
            module._compiled_call_impl = None


def uncompile_vae(vae: nn.Module) -> None:
    """Undo :func:`compile_vae`."""
    for module in (vae.encoder, vae.decoder):
        module._compiled_call_impl = None
