"""Where one denoising-UNet window call spends its GPU time (random SD1.5-size weights).

    python benchmarks/unet_profile.py --device cuda --frames 32 --size 784 --dtype bf16

Prints (1) GPU milliseconds per module kind (ResNet, spatial self-attention with reference read,
cross-attention, feed-forward, motion module, other), measured with CUDA events around each
module on a second call; (2) the top CUDA kernels of one call by ``torch.profiler``; (3) the
attention shapes of the UNet timed alone under each SDPA backend (flash, cuDNN, memory-efficient,
default), so the backend choice of fast mode rests on figures. The kernels are also summed by
family (attention, convolution, matrix product, Triton-fused, other elementwise).

``--compile`` profiles the UNet with its blocks compiled (:func:`mimo.models.compile.compile_blocks`,
as the pipeline runs on CUDA); the per-module timing (1) is then skipped, since its hooks would
sit inside compiled code. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.models import SD15_UNET, TINY_UNET, DenoisingUNet, ReferenceUNet
from mimo.models.blocks import MotionModule, SpatialTransformer
from mimo.models.compile import compile_blocks
from mimo.pipeline.pipeline import _device_name

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def module_kind(name: str, module) -> str | None:
    from diffusers.models.resnet import ResnetBlock2D

    if isinstance(module, ResnetBlock2D):
        return "resnet"
    if isinstance(module, MotionModule):
        return "motion module"
    if name.endswith(".attn1"):
        return "self-attn (+reference)"
    if name.endswith(".attn2"):
        return "cross-attn"
    if name.endswith(".ff") and ".transformer_blocks." in name and "temporal" not in name:
        return "spatial feed-forward"
    if isinstance(module, SpatialTransformer):
        return "spatial transformer (all)"
    return None


KERNEL_FAMILIES = (  # (family, name fragments), first match wins
    ("attention", ("flash", "fmha", "sdpa", "attention")),
    ("convolution", ("conv", "fprop", "dgrad")),
    ("matrix product", ("gemm", "nvjet", "cutlass", "xmma")),
    ("triton fused", ("triton",)),
)


def kernel_family(name: str) -> str:
    low = name.lower()
    for family, parts in KERNEL_FAMILIES:
        if any(p in low for p in parts):
            return family
    return "other (elementwise, norms, copies)"


def time_attention(device, dtype, label, q_len, kv_len, heads, dim, batch, repeats=5):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(batch, heads, q_len, dim // heads, device=device, dtype=dtype)
    k = torch.randn(batch, heads, kv_len, dim // heads, device=device, dtype=dtype)
    v = torch.randn_like(k)
    results = []
    for backend in ("default", "flash", "cudnn", "efficient"):
        ctx = sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                           "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]) if backend != "default" \
            else contextlib.nullcontext()
        try:
            with torch.no_grad(), ctx:
                F.scaled_dot_product_attention(q, k, v)
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                for _ in range(repeats):
                    F.scaled_dot_product_attention(q, k, v)
                torch.cuda.synchronize(device)
            ms = (time.perf_counter() - t0) / repeats * 1e3
            flops = 4 * batch * heads * q_len * kv_len * (dim // heads)
            results.append(f"{backend} {ms:.2f} ms ({flops / ms / 1e9:.0f} TFLOP/s)")
        except RuntimeError as exc:
            results.append(f"{backend} n/a ({str(exc).splitlines()[0][:40]})")
    print(f"  {label:34s} " + " | ".join(results))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--compile", action="store_true", help="compile the UNet's blocks first")
    p.add_argument("--skip-attention", action="store_true", help="leave out (3)")
    args = p.parse_args(argv)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    name = _device_name(device)
    cfg = TINY_UNET if args.tiny else SD15_UNET
    h = args.size // 8
    with torch.device(device):
        ref_unet, unet = ReferenceUNet(cfg).eval().to(dtype), DenoisingUNet(cfg).eval().to(dtype)
    x = torch.randn(2, 8, args.frames, h, h, device=device, dtype=dtype)
    pose = torch.randn(2, cfg.block_out_channels[0], args.frames, h, h, device=device, dtype=dtype)
    clip = torch.randn(2, 1, cfg.cross_attention_dim, device=device, dtype=dtype)
    with torch.no_grad():
        bank = ref_unet.write(torch.randn(1, 4, h, h, device=device, dtype=dtype), 0, clip[1:2])

    def call():
        with torch.no_grad():
            return unet(x, 999, clip, pose_cond=pose, reference=bank, reference_rows=[False, True])

    if args.compile:
        compile_blocks(unet)
    t0 = time.perf_counter()
    call()
    torch.cuda.synchronize(device)
    if args.compile:
        print(f"first call (compiles the blocks): {time.perf_counter() - t0:.1f} s [{name}]")
        call()
    # (1) CUDA events around modules of each kind; kinds nest ("spatial transformer (all)" contains
    #     its self-attn, cross-attn and feed-forward), so the percentages overlap
    events: dict[str, list] = collections.defaultdict(list)
    handles = []
    for mname, module in unet.named_modules():
        kind = module_kind(mname, module)
        if kind is None:
            continue

        def pre(mod, inp, kind=kind):
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            mod._mimo_start = e

        def post(mod, inp, out, kind=kind):
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            events[kind].append((mod._mimo_start, e))

        if not args.compile:
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    t0 = time.perf_counter()
    call()
    torch.cuda.synchronize(device)
    total = (time.perf_counter() - t0) * 1e3
    for hnd in handles:
        hnd.remove()
    print(f"one call, {args.frames} frames, CFG batch 2, {args.size}², {args.dtype}: {total:.1f} ms [{name}]")
    for kind, pairs in sorted(events.items(), key=lambda kv: -sum(a.elapsed_time(b) for a, b in kv[1])):
        ms = sum(a.elapsed_time(b) for a, b in pairs)
        print(f"  {kind:28s} {ms:8.1f} ms ({100 * ms / total:5.1f} %) over {len(pairs)} calls [{name}]")
    # (2) top kernels
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize(device)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))
    families: dict[str, float] = collections.defaultdict(float)
    for evt in prof.key_averages():
        us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0.0)
        families[kernel_family(evt.key)] += us / 1e3
    gpu_ms = sum(families.values())
    for family, ms in sorted(families.items(), key=lambda kv: -kv[1]):
        print(f"  kernels: {family:34s} {ms:8.1f} ms ({100 * ms / gpu_ms:5.1f} %) [{name}]")
    if args.skip_attention:
        return 0
    # (3) the attention shapes of this UNet under each backend
    f = args.frames
    for level, c in enumerate(cfg.block_out_channels[:3]):
        n = (h // 2 ** level) ** 2 if h % 2 ** level == 0 else ((h + 2 ** level - 1) // 2 ** level) ** 2
        time_attention(device, dtype, f"L{level} self, cond (q {n}, kv {2 * n})", n, 2 * n, cfg.heads, c, f)
        time_attention(device, dtype, f"L{level} self, uncond (q {n}, kv {n})", n, n, cfg.heads, c, f)
        time_attention(device, dtype, f"L{level} temporal (seq {f}, batch {2 * n})", f, f, 8, c, 2 * n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
