"""Attention kernels the spatial self-attentions may run on besides PyTorch's SDPA.

* ``sdpa``: ``F.scaled_dot_product_attention`` (cuDNN's fused kernel on Hopper; any device).
* ``fa3``: FlashAttention-3's forward kernel from the ``fa3-fwd`` package (``pip install fa3-fwd``;
  module ``fa3_fwd_interface``), Hopper only.
* ``fa4``: FlashAttention-4 (CuTeDSL) from the ``flash-attn-4`` package (``pip install flash-attn-4``;
  module ``flash_attn.cute``), Hopper and Blackwell.

Both flash kernels take (batch, tokens, heads, dim) on CUDA (fa4: fp16 or bf16; fa3-fwd ships bf16
kernels only); every other call (CPU, fp32, fp16 for fa3, heads wider than 256) falls back to SDPA, so a backend choice
never fails a job. :func:`check_backend` is what a loader calls up front: it raises one clear line
when the package is missing. Which kernel is fastest at MIMO's shapes is measured by
``benchmarks/kernels.py --part attention``.
"""
from __future__ import annotations

import functools
import importlib

import torch
import torch.nn.functional as F

from mimo.errors import FieldError

BACKENDS = {"sdpa": None, "fa3": ("fa3_fwd_interface", "fa3-fwd"), "fa4": ("flash_attn.cute", "flash-attn-4")}
#: head widths the flash kernels take (narrower heads are zero-padded up to a multiple of 8 by us)
MAX_HEAD_DIM = 256


@functools.cache
def _module(name: str):
    module, _ = BACKENDS[name]
    return importlib.import_module(module)


def check_backend(name: str) -> None:
    """Raise :class:`~mimo.errors.FieldError` (field ``attention``) unless ``name`` can run here."""
    if name not in BACKENDS:
        raise FieldError("attention", f"expected one of {', '.join(BACKENDS)}, got {name!r}")
    if BACKENDS[name] is None:
        return
    module, package = BACKENDS[name]
    try:
        _module(name)
    except ImportError as exc:
        raise FieldError("attention", f"the {name} kernel needs the {package} package "
                                      f"(pip install {package}; import {module} failed: {exc})") from None


def supported(name: str, q: torch.Tensor) -> bool:
    """Whether the flash kernel ``name`` takes this call (else SDPA runs it)."""
    dtypes = (torch.bfloat16,) if name == "fa3" else (torch.float16, torch.bfloat16)  # fa3-fwd: bf16 only
    return name != "sdpa" and q.is_cuda and q.dtype in dtypes and q.shape[-1] <= MAX_HEAD_DIM


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d)) v with the chosen kernel; d = q's own head width.

    Shapes: q (S, heads, N, d), k and v (S, heads, M, d) -> (S, heads, N, d).
    """
    if not supported(backend, q):
        return F.scaled_dot_product_attention(q, k, v)
    d = q.shape[-1]
    pad = -d % 8
    qq, kk, vv = (F.pad(t, (0, pad)).transpose(1, 2) for t in (q, k, v))   # (S, N, heads, d')
    out = _module(backend).flash_attn_func(qq, kk, vv, softmax_scale=d ** -0.5)
    if isinstance(out, tuple):  # some versions also return the log-sum-exp
        out = out[0]
    return out[..., :d].transpose(1, 2)
