"""Cost of one training step at full size: SD1.5-size MIMO networks with random weights (built on
the device, no files), random batches at ``--size``². Nothing is asserted; every line carries the
device.

    python benchmarks/train.py --device cuda                      # stage 1 and stage 2, 784²
    python benchmarks/train.py --device cuda --stage motion --frames 24 --checkpointing both
    python benchmarks/train.py --device cpu --tiny --size 64 --frames 4 --batch 2   # smoke run

For each stage (``image``: a batch of ``--batch`` single frames; ``motion``: one window of
``--frames`` frames) and each setting of gradient checkpointing (off / on) and optimizer (AdamW /
bitsandbytes 8-bit AdamW when installed): seconds per optimizer step (median of ``--steps`` after
one warm-up step), peak GPU memory, and the trained parameter count. bf16 autocast on CUDA.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.train.objective import MimoTrainNet, enable_gradient_checkpointing, trainable_parameters


def build(device, tiny: bool) -> MimoTrainNet:
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from mimo.models import SD15_UNET, TINY_UNET, DenoisingUNet, PoseGuider, ReferenceUNet
    from mimo.models.tiny import SD_CLIP_CONFIG, SD_VAE_CONFIG, TINY_CLIP_CONFIG, TINY_VAE_CONFIG

    unet = TINY_UNET if tiny else SD15_UNET
    clip_cfg = TINY_CLIP_CONFIG if tiny else SD_CLIP_CONFIG
    with torch.device(device):
        vae = AutoencoderKL.from_config(TINY_VAE_CONFIG if tiny else SD_VAE_CONFIG)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(
            **{k: v for k, v in clip_cfg.items() if k not in ("architectures", "model_type")}))
        return MimoTrainNet(vae, clip, ReferenceUNet(unet), DenoisingUNet(unet),
                            PoseGuider(unet.block_out_channels[0]))


def batch(B: int, N: int, S: int) -> dict:
    return {"frames": torch.rand(B, 3, N, S, S) * 2 - 1, "scene": torch.rand(B, 3, N, S, S) * 2 - 1,
            "codes": torch.rand(B, 3, N, S, S), "reference": torch.rand(B, 3, S, S) * 2 - 1,
            "clip": torch.randn(B, 3, 224, 224)}


def run(net, stage, B, N, S, checkpointing, adam8bit, steps, device) -> dict:
    params = trainable_parameters(net, stage)
    if adam8bit:
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit(params, lr=1e-5)
    else:
        opt = torch.optim.AdamW(params, lr=1e-5)
    if checkpointing:
        enable_gradient_checkpointing(net.denoising_unet)
        enable_gradient_checkpointing(net.reference_unet)
    net.train()
    data = batch(B, N, S)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = net(data, stage, torch.Generator().manual_seed(i))["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    out = {"s_per_step": statistics.median(times[1:]), "params_m": sum(p.numel() for p in params) / 1e6}
    if cuda:
        out["peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    del opt
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny networks (a CPU smoke run)")
    p.add_argument("--stage", choices=("image", "motion", "both"), default="both")
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--batch", type=int, default=4, help="frames per stage-1 step")
    p.add_argument("--frames", type=int, default=24, help="window of a stage-2 step")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--checkpointing", choices=("off", "on", "both"), default="both")
    p.add_argument("--adam8bit", choices=("off", "on", "both"), default="both")
    args = p.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    stages = ["image", "motion"] if args.stage == "both" else [args.stage]
    ckpt = {"off": [False], "on": [True], "both": [False, True]}[args.checkpointing]
    eight = {"off": [False], "on": [True], "both": [False, True]}[args.adam8bit]
    if True in eight and device.type != "cuda":
        print(f"[{name}] 8-bit AdamW needs a GPU: skipped")
        eight = [False]
    if True in eight:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            print(f"[{name}] bitsandbytes not installed: 8-bit AdamW skipped")
            eight = [False]
    for stage in stages:
        B, N = (args.batch, 1) if stage == "image" else (1, args.frames)
        for c in ckpt:
            for e in eight:
                net = build(device, args.tiny)  # fresh: checkpointing wraps blocks in place
                try:
                    r = run(net, stage, B, N, args.size, c, e, args.steps, device)
                    mem = f", peak {r['peak_gb']:.1f} GiB" if "peak_gb" in r else ""
                    print(f"[{name}] {stage} B={B} N={N} {args.size}² checkpointing={'on' if c else 'off'} "
                          f"{'adamw8bit' if e else 'adamw'}: {r['s_per_step']:.3f} s/step{mem}, "
                          f"{r['params_m']:.0f} M trained parameters", flush=True)
                except torch.OutOfMemoryError:
                    print(f"[{name}] {stage} B={B} N={N} checkpointing={c} adam8bit={e}: out of memory",
                          flush=True)
                del net
                if device.type == "cuda":
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
