"""Every fast-mode shortcut and quality preset: speed on random SD1.5-size weights, quality on the
trained yardstick model. One table; nothing is asserted; every line carries the device.

    # GPU, the full table (about 9 minutes on an H200; eager UNet, no compilation):
    python benchmarks/presets.py --device cuda \\
        --yardstick-weights runs/ys/motion/final --yardstick-data runs/ys/test
    # parts and rows on their own:
    python benchmarks/presets.py --device cuda --part speed --rows exact,fast,balanced,draft
    python benchmarks/presets.py --device cuda --part memory      # low-memory peak, 32 and 150 frames
    python benchmarks/presets.py --device cuda --part quality --yardstick-weights DIR --yardstick-data DIR
    # CPU smoke run of the whole script on tiny random weights (about a minute):
    python benchmarks/presets.py --smoke

Rows: ``exact`` (the official numerics, fp16), ``fast`` (fast mode, bf16 on CUDA), one row per
shortcut switched on alone on top of fast mode (``+dpm++2m``/``+unipc``: the solver at 12 steps,
``+cfg-interval``, ``+reuse2``, ``+kv-pool2``, ``+kv-pool4``, ``+fa3``/``+fa4`` where the package is
installed), and the presets ``balanced`` and ``draft`` (mimo/pipeline/presets.py).

``speed``: seconds per frame of a whole generation at ``--size`` (784) for ``--frames`` (32) for
every row and ``--long-frames`` (150) for the rows of ``--long-rows`` (fast, balanced, draft), the
speed-up against exact mode measured in the same call, and the peak GPU memory. Each row is
warmed up on one 1-step window first. ``--compile`` compiles the UNet's blocks (each row's call
layout compiles once: about 1-2 minutes per row; use it with a few ``--rows``).

``memory``: fast mode and the presets with ``low_memory=True`` (mimo/pipeline/memory.py) at 32
and 150 frames: peak GPU memory against the 8 GB target, and seconds per frame.

``quality``: on the yardstick (``benchmarks/quality.py``: the trained tiny model in
``--yardstick-weights`` and its test split in ``--yardstick-data``), each row generates the test
windows with the same seed; printed are PSNR and SSIM against the ground truth and against exact
mode's own output (the cost of the shortcut itself, free of the model's error), and the dB lost
against exact mode. The goals of issue #21: balanced ≤ 0.3 dB below exact, ≤ 0.36 s/frame at
784² 32 frames on an H200; draft ≤ 0.12 s/frame.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline as bench

from mimo.pipeline.pipeline import MimoPipeline, _device_name
from mimo.pipeline.presets import PRESETS, Preset, Shortcuts

SOLVER_STEPS = 12


def rows() -> dict[str, Preset]:
    """Every row of the table: exact, fast, each shortcut alone on fast mode, the presets."""
    fast = PRESETS["fast"]

    def alone(label, steps=None, **switch):
        return label, dataclasses.replace(fast, name=label, steps=steps or fast.steps,
                                          shortcuts=Shortcuts(**switch))

    out = dict([("exact", PRESETS["exact"]), ("fast", fast),
                alone("+dpm++2m", SOLVER_STEPS, solver="dpm++2m"), alone("+unipc", SOLVER_STEPS, solver="unipc"),
                alone("+cfg-interval", guidance_interval=(0, 800)), alone("+reuse2", reuse_interval=2),
                alone("+kv-pool2", kv_pool=2), alone("+kv-pool4", kv_pool=4)])
    for name, module in (("fa3", "fa3_fwd_interface"), ("fa4", "flash_attn.cute")):
        if _installed(module):
            out.update([alone(f"+{name}", attention=name)])
    out.update(balanced=PRESETS["balanced"], draft=PRESETS["draft"])
    return out


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_row(pipe: MimoPipeline, preset: Preset, frames: int, size: int, steps: int | None,
             warmup: bool = True) -> dict:
    """Seconds per frame (after a 1-step warm-up on one window) and peak GPU memory."""
    character, codes, scene = bench.inputs(frames, size)
    run = dict(height=size, width=size, mode=preset)
    w = min(frames, preset.context)
    if warmup:
        pipe(character, codes[:w], scene[:w], num_inference_steps=1, **run)
    if pipe.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(pipe.device)
    _sync(pipe.device)
    t0 = time.perf_counter()
    out = pipe(character, codes, scene, num_inference_steps=steps, **run)
    _sync(pipe.device)
    seconds = time.perf_counter() - t0
    return {"s_per_frame": seconds / frames, "peak_gb": out.stats.get("peak_memory_gb", float("nan")),
            "windows": out.stats["windows"], "steps": out.stats["steps"],
            "stage_ms_per_frame": {k: 1000 * v / frames for k, v in out.stats["seconds"].items()},
            "peak_gb_after": dict(out.stats.get("peak_memory_gb_after", {}))}


def stages(r: dict) -> str:
    """Where the time went (ms per frame by stage) and the peak so far after each stage (GiB)."""
    ms = " ".join(f"{k} {v:.0f}" for k, v in r["stage_ms_per_frame"].items())
    peaks = " ".join(f"{k} {v:.1f}" for k, v in r["peak_gb_after"].items())
    return f"  ms/frame: {ms}" + (f"; peak GiB after: {peaks}" if peaks else "")


def speed(args, table: dict, device, tiny: bool) -> None:
    exact_dtype, fast_dtype = (torch.float16, torch.bfloat16) if device.type == "cuda" else (torch.float32,) * 2
    chosen = rows()
    names = args.rows.split(",") if args.rows else list(chosen)
    pipe = None
    for name in names:
        preset = chosen[name]
        dtype = exact_dtype if preset.schedule == "exact" else fast_dtype
        if pipe is None or pipe.dtype != dtype:  # one pipeline on the GPU at a time: the peaks are a job's
            pipe = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            pipe = bench.build_pipeline(tiny, device, dtype)
            if args.compile:
                pipe.compile_blocks(vae=True)
        lengths = [args.frames] + [args.long_frames] * (name in args.long_rows.split(","))
        for frames in lengths:
            r = time_row(pipe, preset, frames, args.size, args.steps, args.warmup)
            table.setdefault(name, {})[f"speed_{frames}"] = r
            base = table.get("exact", {}).get(f"speed_{frames}")
            gain = f", {base['s_per_frame'] / r['s_per_frame']:.2f}x exact" if base else ""
            print(f"{name:>14} {frames:4d} frames {args.size}²: {r['s_per_frame']:.3f} s/frame{gain}, "
                  f"{r['steps']} steps, {r['windows']} windows, peak {r['peak_gb']:.2f} GiB "
                  f"[{_device_name(device)}, {str(pipe.dtype).replace('torch.', '')}]", flush=True)
            print(stages(r), flush=True)


def memory(args, table: dict, device, tiny: bool) -> None:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    built = bench.build_pipeline(tiny, device, dtype)
    pipe = MimoPipeline(built.vae, built.image_encoder, built.reference_unet, built.denoising_unet,
                        built.pose_guider, device=device, dtype=dtype, low_memory=True)
    del built
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for name in ("fast", "balanced", "draft"):
        for frames in (args.frames, args.long_frames):
            r = time_row(pipe, PRESETS[name], frames, args.size, args.steps, args.warmup)
            table.setdefault(f"{name} low-memory", {})[f"speed_{frames}"] = r
            print(f"{name + ' low-memory':>22} {frames:4d} frames {args.size}²: {r['s_per_frame']:.3f} s/frame, "
                  f"{r['windows']} windows, peak {r['peak_gb']:.2f} GiB (target 8 GB = 7.45 GiB) "
                  f"[{_device_name(device)}, {str(dtype).replace('torch.', '')}]", flush=True)
            print(stages(r), flush=True)


def quality(args, table: dict, device) -> None:
    import quality as ys  # benchmarks/quality.py

    windows = ys.test_windows(Path(args.yardstick_data), args.yardstick_size, args.yardstick_frames, args.seed)
    pipe = MimoPipeline.from_pretrained(args.yardstick_weights, device=device, dtype=torch.float32, compile=False)
    chosen = rows()
    names = args.rows.split(",") if args.rows else list(chosen)
    exact = None
    for name in ["exact"] + [n for n in names if n != "exact"]:
        preset = chosen[name]
        t0 = time.perf_counter()
        outs = [generate(pipe, w, preset, args.steps, args.seed) for w in windows]
        r = ys.score(windows, outs)
        if exact is None:
            exact = outs
        r["psnr_vs_exact"] = float(np.mean([ys.psnr(o, e) for o, e in zip(outs, exact)]))
        r["ssim_vs_exact"] = float(np.mean([ys.ssim(o, e) for o, e in zip(outs, exact)]))
        r["seconds"] = time.perf_counter() - t0
        table.setdefault(name, {})["quality"] = r
        loss = table["exact"]["quality"]["psnr"] - r["psnr"]
        print(f"{name:>14} yardstick: PSNR {r['psnr']:.2f} dB (body {r['psnr_body']:.2f}), SSIM {r['ssim']:.3f}, "
              f"{loss:+.2f} dB lost vs exact; vs exact output PSNR {r['psnr_vs_exact']:.2f} dB, "
              f"SSIM {r['ssim_vs_exact']:.3f} [{_device_name(device)}, fp32]", flush=True)


def generate(pipe: MimoPipeline, w: dict, preset: Preset, steps: int | None, seed: int) -> np.ndarray:
    """One yardstick window with the preset's own steps, window and overlap (as
    ``quality.generate`` does for exact mode), the occlusion composited over the result."""
    size, frames = w["truth"].shape[1], len(w["codes"])
    context = min(preset.context, frames)
    out = pipe(w["reference"], w["codes"], w["scene"], height=size, width=size, num_inference_steps=steps,
               seed=seed, context_frames=context, context_overlap=min(preset.overlap, context - 1),
               mode=preset).frames
    a = w["occlusion"][..., None]
    return np.rint(np.clip(out * (1 - a) + w["scene"] / 255.0 * a, 0, 1) * 255).astype(np.uint8)


def smoke_yardstick(folder: Path) -> tuple[str, str]:
    """Tiny random weights and a 2-clip synthetic test split, for --smoke."""
    from mimo.data.synth import synth_dataset
    from mimo.models import make_tiny

    weights = make_tiny(folder / "weights")
    synth_dataset(folder / "test", seed=5, clips=2, frames=4, size=64, split="test", characters=2)
    return str(weights), str(folder / "test")


def summary(table: dict, frames: int) -> None:
    print(f"\n{'row':>14} | s/frame ({frames} f) | speed-up | PSNR dB | lost dB | vs exact dB | SSIM")
    base = table.get("exact", {}).get(f"speed_{frames}", {}).get("s_per_frame")
    for name, r in table.items():
        s = r.get(f"speed_{frames}", {}).get("s_per_frame")
        q = r.get("quality", {})
        cells = [f"{s:.3f}" if s else "-", f"{base / s:.2f}x" if s and base else "-",
                 f"{q['psnr']:.2f}" if q else "-",
                 (f"{table['exact']['quality']['psnr'] - q['psnr']:+.2f}"
                  if q and "quality" in table.get("exact", {}) else "-"),
                 f"{q['psnr_vs_exact']:.2f}" if q else "-", f"{q['ssim']:.3f}" if q else "-"]
        print(f"{name:>14} | " + " | ".join(cells))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("all", "speed", "memory", "quality"), default="all")
    p.add_argument("--rows", default=None, help="comma-separated rows (default: all); see the docstring")
    p.add_argument("--device", default=None)
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--long-frames", type=int, default=150)
    p.add_argument("--long-rows", default="fast,balanced,draft", help="rows also timed at --long-frames")
    p.add_argument("--steps", type=int, default=None, help="override every row's steps (default: the row's)")
    p.add_argument("--compile", action="store_true", help="compile the UNet's blocks (slow: per row layout)")
    p.add_argument("--yardstick-weights", default=None, help="trained tiny model (benchmarks/quality.py)")
    p.add_argument("--yardstick-data", default=None, help="its test split folder")
    p.add_argument("--yardstick-size", type=int, default=128)
    p.add_argument("--yardstick-frames", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true",
                   help="CPU, tiny random weights, 32², 4/6 frames, 1 step, a 2-clip synthetic yardstick")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip each row's 1-step warm-up")
    args = p.parse_args(argv)

    tiny = args.smoke
    if args.smoke:
        args.device, args.size, args.frames, args.long_frames, args.steps = "cpu", 32, 4, 6, 1
        args.yardstick_size, args.yardstick_frames, args.warmup = 32, 4, False
        tmp = tempfile.TemporaryDirectory(prefix="mimo-presets-smoke-")
        args.yardstick_weights, args.yardstick_data = smoke_yardstick(Path(tmp.name))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    table: dict = {}
    if args.part in ("all", "speed"):
        speed(args, table, device, tiny)
    if args.part in ("all", "quality"):
        if args.yardstick_weights and args.yardstick_data:
            quality(args, table, device)
        else:
            print("quality: skipped (give --yardstick-weights and --yardstick-data)", flush=True)
    if args.part in ("all", "memory"):
        memory(args, table, device, tiny)
    summary(table, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
