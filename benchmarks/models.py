"""MIMO networks at SD1.5 size with random weights: parameter counts, load time, memory, one call.

    .venv/bin/python benchmarks/models.py --device cuda                       # the GPU run (H100/H200)
    .venv/bin/python benchmarks/models.py --device cuda --dtypes float16 bfloat16 --frames 24 --size 784
    .venv/bin/python benchmarks/models.py --device cpu --tiny --size 64 --frames 4   # CPU smoke run

Steps: (1) parameter counts of every network built on the meta device, compared with docs/MIMO.md §10.1;
(2) write a random weights folder in the official layout (fp16 files, networks built on
``--device``) to ``--folder`` (default: a temp dir, deleted afterwards); (3) for each dtype:
``load_mimo`` time and the memory its parameters take (``torch.cuda.max_memory_allocated`` on
CUDA); (4) unless ``--no-forward``: reference-UNet write pass (batch 2) and one denoising-UNet
window call in the official CFG layout (batch 2, rows [uncond, cond], the uncond row without
reference), best of ``--repeats`` after a warm-up, with its peak memory. Every line carries the
device name. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from mimo.models import SD15_UNET, DenoisingUNet, PoseGuider, ReferenceUNet, load_mimo, make_tiny
from mimo.models.loading import _build_image_encoder, _build_vae
from mimo.models.tiny import SD_CLIP_CONFIG, SD_VAE_CONFIG

SPEC_PARAMS = {"denoising_unet": 1_312_741_764, "reference_unet": 859_508_800, "pose_guider": 1_086_480,
               "vae": 83_653_863, "image_encoder": 303_966_208}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parameter_counts(dev: str) -> None:
    with torch.device("meta"):
        nets = {"denoising_unet": DenoisingUNet(SD15_UNET), "reference_unet": ReferenceUNet(SD15_UNET),
                "pose_guider": PoseGuider(320)}
    nets["vae"] = _build_vae(SD_VAE_CONFIG)
    nets["image_encoder"] = _build_image_encoder(SD_CLIP_CONFIG)
    total = 0
    for name, net in nets.items():
        n = sum(v.numel() for k, v in net.state_dict().items() if not k.endswith(".pe"))
        total += n
        print(f"[{dev}] params {name:<15} {n:>15,}  spec {SPEC_PARAMS[name]:>15,}  "
              f"{'OK' if n == SPEC_PARAMS[name] else 'DIFFERENT'}")
    print(f"[{dev}] params total           {total:>15,}  spec {sum(SPEC_PARAMS.values()):>15,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    ap.add_argument("--tiny", action="store_true", help="tiny widths instead of SD1.5 (CPU smoke run)")
    ap.add_argument("--folder", default=None, help="where to write the random weights (kept if given)")
    ap.add_argument("--size", type=int, default=784, help="image side in pixels (latent = size/8)")
    ap.add_argument("--frames", type=int, default=24, help="frames per denoising window (<= 32)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-forward", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    dev = device_name(device)
    print(f"[{dev}] torch {torch.__version__}")
    parameter_counts(dev)

    tmp = None
    folder = Path(args.folder) if args.folder else Path(tmp := tempfile.mkdtemp(prefix="mimo-bench-"))
    try:
        t = time.perf_counter()
        if args.tiny:
            make_tiny(folder, seed=0, dtype=torch.float16, device=device)
        else:
            make_tiny(folder, seed=0, unet_config=SD15_UNET, vae_config=SD_VAE_CONFIG, clip_config=SD_CLIP_CONFIG,
                      dtype=torch.float16, device=device)
        size_gb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e9
        print(f"[{dev}] wrote random {'tiny' if args.tiny else 'SD1.5-size'} folder ({size_gb:.2f} GB fp16) "
              f"in {time.perf_counter() - t:.1f} s")
        for name in args.dtypes:
            dtype = getattr(torch, name)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            t = time.perf_counter()
            models = load_mimo(folder, device=device, dtype=dtype)
            sync(device)
            load_s = time.perf_counter() - t
            nbytes = sum(p.numel() * p.element_size() for net in (models.vae, models.image_encoder,
                          models.reference_unet, models.denoising_unet, models.pose_guider)
                          for p in net.parameters())
            mem = f", cuda max allocated {torch.cuda.max_memory_allocated(device) / 1e9:.2f} GB" \
                if device.type == "cuda" else ""
            print(f"[{dev}] {name}: load_mimo {load_s:.1f} s, parameters {nbytes / 1e9:.2f} GB{mem}")
            if not args.no_forward:
                forward(models, device, dtype, args, dev)
            del models
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@torch.no_grad()
def forward(models, device, dtype, args, dev: str) -> None:
    cfg = models.unet_config
    h = w = args.size // 8
    g = torch.Generator(device="cpu").manual_seed(0)
    clip = torch.randn(2, 1, cfg.cross_attention_dim, generator=g).to(device, dtype)
    clip[0] = 0
    ref = torch.randn(2, 4, h, w, generator=g).to(device, dtype)
    sample = torch.randn(2, 8, args.frames, h, w, generator=g).to(device, dtype)
    codes = torch.rand(1, 3, args.frames, args.size, args.size, generator=g).to(device, dtype)

    def timed(fn):
        fn()
        sync(device)
        best = float("inf")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn()
            sync(device)
            best = min(best, time.perf_counter() - t)
        peak = f", peak {torch.cuda.max_memory_allocated(device) / 1e9:.2f} GB" if device.type == "cuda" else ""
        return out, best, peak

    bank, s, peak = timed(lambda: models.reference_unet.write(ref, 0, clip))
    print(f"[{dev}] {dtype}: reference UNet write, batch 2, {args.size}^2: {s * 1e3:.1f} ms{peak}")
    pose, s, peak = timed(lambda: models.pose_guider(codes))
    print(f"[{dev}] {dtype}: pose guider, {args.frames} frames {args.size}^2: {s * 1e3:.1f} ms{peak}")
    pose = pose.repeat(2, 1, 1, 1, 1)
    _, s, peak = timed(lambda: models.denoising_unet(sample, 999, clip, pose_cond=pose, reference=bank,
                                                     reference_rows=[False, True]))
    print(f"[{dev}] {dtype}: denoising UNet window, CFG batch 2 x {args.frames} frames, {args.size}^2: "
          f"{s:.3f} s ({s / (2 * args.frames) * 1e3:.1f} ms per frame-evaluation){peak}")


if __name__ == "__main__":
    main()
