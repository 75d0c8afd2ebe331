"""MimoPipeline speed and memory with random weights (no downloads).

    .venv/bin/python benchmarks/pipeline.py --device cuda --dtype fp16                # SD1.5 size, 32 f, 784²
    .venv/bin/python benchmarks/pipeline.py --device cuda --frames 150
    .venv/bin/python benchmarks/pipeline.py --tiny --device cpu --frames 12 --size 64 --steps 2

Prints, with the device name on every line: seconds per frame of a whole generation, the breakdown
per stage (CLIP+VAE encode, reference pass, pose guider, denoising loop, VAE decode), one
denoising-UNet window call (CFG batch 2), and peak GPU memory. The official code's figures on one
H200 (docs/MIMO.md §10.2: 784², 32 frames, 25 steps, CFG 3.5, fp16) are printed for comparison.
Also: frame-evaluations per output frame (window frames summed over windows / frames) and the
achieved TFLOP/s of the denoising loop (FLOP of one window call counted by
``torch.utils.flop_counter``, times the calls made). ``--mode`` takes any preset of
mimo/pipeline/presets.py (its steps unless ``--steps``); presets other than exact default to bf16.

    python benchmarks/pipeline.py --device cuda --compare --frames 32 --size 256

``--compare`` runs exact mode (fp16) and fast mode (fp16, then bf16) on the same random networks,
inputs and seed and prints how far fast-mode frames are from exact-mode frames (PSNR over the clip
and the largest per-frame max difference, in 8-bit levels) — what a user trades for the speed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.pipeline.pipeline import MimoPipeline, _device_name, resolve_device_dtype
from mimo.pipeline.presets import PRESETS

OFFICIAL_H200 = {32: 1.44, 150: 1.25}  # s/frame, official code, random weights, one H200


def build_pipeline(tiny: bool, device: torch.device, dtype: torch.dtype) -> MimoPipeline:
    """Random networks built directly on ``device`` (no weight files)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from mimo.models import SD15_UNET, TINY_UNET, DenoisingUNet, PoseGuider, ReferenceUNet
    from mimo.models.tiny import SD_CLIP_CONFIG, SD_VAE_CONFIG, TINY_CLIP_CONFIG, TINY_VAE_CONFIG

    cfg = TINY_UNET if tiny else SD15_UNET
    vae_cfg = TINY_VAE_CONFIG if tiny else SD_VAE_CONFIG
    clip_cfg = TINY_CLIP_CONFIG if tiny else SD_CLIP_CONFIG
    torch.manual_seed(0)
    with torch.device(device):
        nets = [
            AutoencoderKL.from_config(vae_cfg),
            CLIPVisionModelWithProjection(CLIPVisionConfig(
                **{k: v for k, v in clip_cfg.items() if k not in ("architectures", "model_type")})),
            ReferenceUNet(cfg), DenoisingUNet(cfg), PoseGuider(cfg.block_out_channels[0]),
        ]
    nets = [n.to(dtype).eval().requires_grad_(False) for n in nets]
    return MimoPipeline(*nets, device=device, dtype=dtype)


def inputs(frames: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    character = rng.integers(0, 256, (size, size * 3 // 4, 3), dtype=np.uint8)
    codes = np.zeros((frames, size, size, 3), np.uint8)
    for i in range(frames):
        codes[i, size // 6:size * 5 // 6, size // 3 + i % 8:size * 2 // 3 + i % 8] = (180, 100, 60)
    scene = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    return character, codes, scene


def _window_call(pipe: MimoPipeline, frames: int, size: int):
    """A closure making one denoising-UNet call on a window (CFG batch 2, reference bank read)."""
    h = size // 8
    dev, dt = pipe.device, pipe.dtype
    c0 = pipe.denoising_unet.config.block_out_channels[0]
    d = pipe.denoising_unet.config.cross_attention_dim
    with torch.no_grad():
        clip2 = torch.randn(2, 1, d, device=dev, dtype=dt)
        bank = pipe.reference_unet.write(torch.randn(2, 4, h, h, device=dev, dtype=dt), 0, clip2)
    x = torch.randn(2, 8, frames, h, h, device=dev, dtype=dt)
    pose = torch.randn(2, c0, frames, h, h, device=dev, dtype=dt)
    t = torch.tensor(999, device=dev)

    @torch.no_grad()
    def call():
        return pipe.denoising_unet(x, t, clip2, pose_cond=pose, reference=bank, reference_rows=[False, True])

    return call


def time_window(pipe: MimoPipeline, frames: int, size: int, repeats: int = 3) -> float:
    """Seconds of one denoising-UNet call on a window (median of ``repeats`` after a warm-up)."""
    call = _window_call(pipe, frames, size)
    times = []
    for _ in range(repeats + 1):
        _sync(pipe.device)
        t0 = time.perf_counter()
        call()
        _sync(pipe.device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def window_flops(pipe: MimoPipeline, frames: int, size: int) -> float:
    """FLOP of one denoising-UNet window call (CFG batch 2), counted by torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    call = _window_call(pipe, frames, size)
    with FlopCounterMode(display=False) as counter:
        call()
    return float(counter.get_total_flops())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def compare(pipe_args, args) -> None:
    """Exact (fp16) vs fast (fp16, bf16) frames on the same networks, inputs and seed."""
    device = pipe_args["device"]
    pipe = build_pipeline(args.tiny, device, torch.float16)
    character, codes, scene = inputs(args.frames, args.size)
    run = dict(height=args.size, width=args.size, guidance_scale=args.cfg, context_overlap=args.overlap,
               num_inference_steps=args.steps)
    exact = pipe(character, codes, scene, mode="exact", context_frames=args.context or 24, **run).frames
    size = "tiny" if args.tiny else "SD1.5-size"
    tag = f"[{_device_name(device)}, {args.frames} frames {args.size}² {args.steps} steps, random {size} weights]"

    def cast(dtype):  # fp16 -> bf16 once, so no run sees weights rounded twice
        for net in (pipe.vae, pipe.image_encoder, pipe.reference_unet, pipe.denoising_unet, pipe.pose_guider):
            net.to(dtype)
        pipe.dtype = dtype

    def report(label, frames):
        per_frame = np.abs(frames - exact).reshape(len(frames), -1).max(axis=1) * 255
        print(f"{label} vs exact (float16, 24): PSNR {psnr(frames, exact):.1f} dB, per-frame max |diff| "
              f"{per_frame.max():.0f} levels (median {np.median(per_frame):.0f}), mean |diff| "
              f"{np.abs(frames - exact).mean() * 255:.2f} levels {tag}")

    for dtype in (torch.float16, torch.bfloat16):
        if dtype != pipe.dtype:
            cast(dtype)
            # the noise floor: exact mode itself, only the dtype changed
            report("exact (bfloat16)", pipe(character, codes, scene, mode="exact",
                                             context_frames=args.context or 24, **run).frames)
        for context in (24, 32):
            report(f"fast ({str(dtype).replace('torch.', '')}, {context}-frame windows)",
                   pipe(character, codes, scene, mode="fast", context_frames=context, **run).frames)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--steps", type=int, default=None, help="default: the preset's (25 exact/fast)")
    p.add_argument("--cfg", type=float, default=3.5)
    p.add_argument("--context", type=int, default=None, help="default: the preset's (24 exact, 32 fast)")
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--mode", choices=list(PRESETS), default="exact",
                   help="a preset of mimo/pipeline/presets.py (benchmarks/presets.py times them all)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None,
                   help="default: fp16 (exact) / bf16 (other presets) on CUDA, fp32 on CPU")
    p.add_argument("--tiny", action="store_true", help="tiny networks (CPU smoke run)")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="compile the denoising UNet's blocks and the VAE (MimoPipeline.compile_blocks, "
                        "as mimo-server does); the warm-up pays it")
    p.add_argument("--no-compile-vae", action="store_true", help="with --compile: the UNet's blocks only")
    p.add_argument("--compare", action="store_true", help="fast vs exact frames (PSNR, max difference)")
    args = p.parse_args(argv)

    device, dtype = resolve_device_dtype(args.device, args.dtype)
    if args.dtype is None and args.mode != "exact" and device.type == "cuda":
        dtype = torch.bfloat16
    if args.steps is None:
        args.steps = PRESETS[args.mode].steps
    if args.compare:
        compare(dict(device=device), args)
        return 0
    context = args.context or PRESETS[args.mode].context
    name = _device_name(device)
    tag = f"[{name}, {str(dtype).replace('torch.', '')}, {'tiny' if args.tiny else 'SD1.5 size'}]"
    t0 = time.perf_counter()
    pipe = build_pipeline(args.tiny, device, dtype)
    print(f"build random networks: {time.perf_counter() - t0:.1f} s {tag}")
    win = min(args.frames, context)
    win_flops = window_flops(pipe, win, args.size)  # eagerly: the counter does not see compiled code
    if args.compile:
        tag = tag[:-1] + (", compiled blocks]" if args.no_compile_vae else ", compiled blocks+VAE]")
        pipe.compile_blocks(vae=not args.no_compile_vae)
    character, codes, scene = inputs(args.frames, args.size)
    run = dict(height=args.size, width=args.size, guidance_scale=args.cfg, context_frames=context,
               context_overlap=args.overlap, mode=args.mode)
    if not args.no_warmup:  # kernels, allocator, cuDNN autotuning (and compilation)
        w = min(args.frames, context)
        t0 = time.perf_counter()
        pipe(character, codes[:w], scene[:w], num_inference_steps=1, **run)
        print(f"warm-up ({w} frames, 1 step): {time.perf_counter() - t0:.1f} s {tag}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = pipe(character, codes, scene, num_inference_steps=args.steps, **run)
    total = time.perf_counter() - t0
    s = out.stats
    per_call = f", {s['windows_per_call']} per call" if "windows_per_call" in s else ""
    print(f"generate {args.frames} frames {args.size}² {args.steps} steps cfg {args.cfg} "
          f"({s['windows']} windows of {min(context, args.frames)}{per_call}, mode {args.mode}): "
          f"{total:.2f} s = {total / args.frames:.3f} s/frame {tag}")
    for stage, sec in s["seconds"].items():
        print(f"  {stage:10s} {sec:8.3f} s  ({100 * sec / total:5.1f} %) {tag}")
    if "peak_memory_gb" in s:
        after = ", ".join(f"{k} {v:.2f}" for k, v in s["peak_memory_gb_after"].items())
        print(f"  peak GPU memory {s['peak_memory_gb']:.2f} GiB (peak so far after each stage: {after}) {tag}")
    evals = s["frame_evaluations_per_frame"]
    flops = win_flops / win * evals * args.frames * args.steps
    print(f"  frame-evaluations per output frame {evals:.2f}; denoising loop {flops / 1e12:.0f} TFLOP "
          f"at {flops / s['seconds']['denoise'] / 1e12:.0f} TFLOP/s {tag}")
    sec = time_window(pipe, win, args.size)
    print(f"one denoising-UNet window call ({win} frames, CFG batch 2): {sec:.3f} s {tag}")
    if not args.tiny and args.size == 784 and args.steps == 25 and args.frames in OFFICIAL_H200:
        ref = OFFICIAL_H200[args.frames]
        print(f"official code on one H200 (docs/MIMO.md §10.2): {ref:.2f} s/frame -> speed-up "
              f"{ref / (total / args.frames):.2f}x (compare only on an H200) {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
