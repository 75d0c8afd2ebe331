"""One denoising-UNet window call under each fast-mode ingredient (random SD1.5-size weights).

    python benchmarks/unet_variants.py --device cuda --frames 32 --size 784
    python benchmarks/unet_variants.py --device cuda --variants fp16 bf16 bf16-cudnn --compile
    python benchmarks/unet_variants.py --device cpu --tiny --frames 4 --size 64   # smoke run

For every variant: seconds per call (median of ``--repeats`` after a warm-up), FLOP per call
counted by ``torch.utils.flop_counter`` (convolutions, matmuls and attention), achieved TFLOP/s,
peak GPU memory of the call, and the largest difference from the first variant's output (same
inputs), so a variant that changes the numbers shows it. Layout: CFG batch 2 per window, rows
[uncond, cond], only the conditional row reads the reference bank; ``--windows N`` stacks N
windows in one call. Every line carries the device name; nothing is asserted.

Variants: ``fp16``, ``bf16`` (default SDPA backend choice), ``bf16-flash``, ``bf16-cudnn``,
``bf16-efficient`` (one SDPA backend forced), ``bf16-cl`` (channels-last activations and
weights), ``bf16-compile`` (``torch.compile`` of the UNet, compile time printed separately),
``bf16-regional`` / ``fp16-regional`` (:func:`mimo.models.compile.compile_blocks`, what the
pipeline uses on CUDA), ``bf16-regional-dyn`` (the same with symbolic shapes from the start).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.models import SD15_UNET, TINY_UNET, DenoisingUNet, ReferenceUNet
from mimo.models.compile import compile_blocks, uncompile_blocks
from mimo.pipeline.pipeline import _device_name

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _sdpa(backend: str | None):
    if backend is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                        "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend])


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--windows", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--variants", nargs="+", default=["fp16", "bf16", "bf16-flash", "bf16-cudnn",
                                                      "bf16-efficient", "bf16-cl", "bf16-regional"])
    p.add_argument("--compile", action="store_true", help="also time bf16-compile")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    variants = list(args.variants) + (["bf16-compile"] if args.compile else [])
    cfg = TINY_UNET if args.tiny else SD15_UNET
    name = _device_name(device)
    h = args.size // 8
    torch.manual_seed(0)
    with torch.device(device):
        ref_unet, unet = ReferenceUNet(cfg).eval(), DenoisingUNet(cfg).eval()
    ref_unet.requires_grad_(False), unet.requires_grad_(False)
    batch = 2 * args.windows
    g = torch.Generator(device).manual_seed(1)
    x32 = torch.randn(batch, 8, args.frames, h, h, device=device, generator=g)
    pose32 = torch.randn(batch, cfg.block_out_channels[0], args.frames, h, h, device=device, generator=g)
    clip32 = torch.randn(batch, 1, cfg.cross_attention_dim, device=device, generator=g)
    ref32 = torch.randn(1, 4, h, h, device=device, generator=g)
    rows = [False, True] * args.windows
    first = None
    print(f"denoising-UNet call: {args.windows} window(s) x {args.frames} frames, CFG batch {batch}, "
          f"{args.size}² [{name}]")
    for variant in variants:
        dtype_name, _, option = variant.partition("-")
        dtype = DTYPES[dtype_name]
        unet.to(dtype), ref_unet.to(dtype)
        fmt = torch.channels_last if option == "cl" else torch.contiguous_format
        unet.to(memory_format=fmt)
        x, pose, clip = x32.to(dtype), pose32.to(dtype), clip32.to(dtype)
        with torch.no_grad():
            bank = ref_unet.write(ref32.to(dtype), 0, clip[1:2])
        model = unet
        uncompile_blocks(unet)
        torch._dynamo.reset()
        if option == "compile":
            model = torch.compile(unet, dynamic=False)
        elif option.startswith("regional"):
            compile_blocks(unet, dynamic=True if option.endswith("dyn") else None)
        backend = option if option in ("flash", "cudnn", "efficient") else None

        def call():
            with torch.no_grad(), _sdpa(backend):
                return model(x, 999, clip, pose_cond=pose, reference=bank, reference_rows=rows)

        try:
            t0 = time.perf_counter()
            out = call()
            _sync(device)
            warm = time.perf_counter() - t0
            times = []
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(args.repeats):
                _sync(device)
                t0 = time.perf_counter()
                out = call()
                _sync(device)
                times.append(time.perf_counter() - t0)
        except Exception as exc:  # a backend that refuses these shapes is a finding, not a crash
            print(f"  {variant:15s} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]} [{name}]")
            continue
        sec = statistics.median(times)
        compiled = option == "compile" or option.startswith("regional")
        flops = count_flops(call) if not compiled else None
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        diff = 0.0 if first is None else float((out.float() - first).abs().max())
        if first is None:
            first = out.float()
            base_flops = flops
        flops = flops or base_flops
        extra = f", first call {warm:.1f} s" if compiled else ""
        print(f"  {variant:15s} {sec:7.3f} s/call  {flops / 1e12:7.2f} TFLOP  {flops / sec / 1e12:6.1f} TFLOP/s  "
              f"peak {peak:6.2f} GiB  max|diff| {diff:.4f}{extra} [{name}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
