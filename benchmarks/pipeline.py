"""MimoPipeline speed and memory with random weights (no downloads).

    .venv/bin/python benchmarks/pipeline.py --device cuda --dtype fp16                # SD1.5 size, 32 f, 784²
    .venv/bin/python benchmarks/pipeline.py --device cuda --frames 150
    .venv/bin/python benchmarks/pipeline.py --tiny --device cpu --frames 12 --size 64 --steps 2

Prints, with the device name on every line: seconds per frame of a whole generation, the breakdown
per stage (CLIP+VAE encode, reference pass, pose guider, denoising loop, VAE decode), one
denoising-UNet window call (CFG batch 2), and peak GPU memory. The official code's figures on one
H200 (DESIGN §10: 784², 32 frames, 25 steps, CFG 3.5, fp16) are printed for comparison.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.pipeline.pipeline import MimoPipeline, _device_name, resolve_device_dtype  # noqa: E402

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


def time_window(pipe: MimoPipeline, frames: int, size: int, repeats: int = 3) -> float:
    """Seconds of one denoising-UNet call on a window (CFG batch 2, reference bank read)."""
    h = size // 8
    dev, dt = pipe.device, pipe.dtype
    c0 = pipe.denoising_unet.config.block_out_channels[0]
    d = pipe.denoising_unet.config.cross_attention_dim
    with torch.no_grad():
        ref = torch.randn(2, 4, h, h, device=dev, dtype=dt)
        clip2 = torch.randn(2, 1, d, device=dev, dtype=dt)
        bank = pipe.reference_unet.write(ref, 0, clip2)
        x = torch.randn(2, 8, frames, h, h, device=dev, dtype=dt)
        pose = torch.randn(2, c0, frames, h, h, device=dev, dtype=dt)
        t = torch.tensor(999, device=dev)
        times = []
        for _ in range(repeats + 1):
            _sync(dev)
            t0 = time.perf_counter()
            pipe.denoising_unet(x, t, clip2, pose_cond=pose, reference=bank, reference_rows=[False, True])
            _sync(dev)
            times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfg", type=float, default=3.5)
    p.add_argument("--context", type=int, default=24)
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--mode", choices=("exact", "fast"), default="exact")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None)
    p.add_argument("--tiny", action="store_true", help="tiny networks (CPU smoke run)")
    p.add_argument("--no-warmup", action="store_true")
    args = p.parse_args(argv)

    device, dtype = resolve_device_dtype(args.device, args.dtype)
    name = _device_name(device)
    tag = f"[{name}, {str(dtype).replace('torch.', '')}, {'tiny' if args.tiny else 'SD1.5 size'}]"
    t0 = time.perf_counter()
    pipe = build_pipeline(args.tiny, device, dtype)
    print(f"build random networks: {time.perf_counter() - t0:.1f} s {tag}")
    character, codes, scene = inputs(args.frames, args.size)
    run = dict(height=args.size, width=args.size, guidance_scale=args.cfg, context_frames=args.context,
               context_overlap=args.overlap, mode=args.mode)
    if not args.no_warmup:  # kernels, allocator, cuDNN autotuning
        w = min(args.frames, args.context)
        pipe(character, codes[:w], scene[:w], num_inference_steps=1, **run)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = pipe(character, codes, scene, num_inference_steps=args.steps, **run)
    total = time.perf_counter() - t0
    s = out.stats
    print(f"generate {args.frames} frames {args.size}² {args.steps} steps cfg {args.cfg} "
          f"({s['windows']} windows of {args.context}, mode {args.mode}): {total:.2f} s = "
          f"{total / args.frames:.3f} s/frame {tag}")
    for stage, sec in s["seconds"].items():
        print(f"  {stage:10s} {sec:8.3f} s  ({100 * sec / total:5.1f} %) {tag}")
    if "peak_memory_gb" in s:
        print(f"  peak GPU memory {s['peak_memory_gb']:.2f} GiB {tag}")
    win = min(args.frames, args.context)
    sec = time_window(pipe, win, args.size)
    print(f"one denoising-UNet window call ({win} frames, CFG batch 2): {sec:.3f} s {tag}")
    if not args.tiny and args.size == 784 and args.steps == 25 and args.frames in OFFICIAL_H200:
        ref = OFFICIAL_H200[args.frames]
        print(f"official code on one H200 (DESIGN §10): {ref:.2f} s/frame -> speed-up "
              f"{ref / (total / args.frames):.2f}x (compare only on an H200) {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
