"""Scaling out: what splitting one job over N GPUs costs and gains, and what a Ray cluster adds.

CPU figures (any machine; what this project's machines can measure):

    .venv/bin/python benchmarks/scale.py --cpu

* per-step reduction: all-reduce of the per-frame window sums a rank contributes each denoising
  step at 784² (latents 98²), over gloo between 2 CPU processes; both the exact-mode sum
  (2 CFG halves x 4 x F x 98 x 98, fp32) and a sums-plus-counts tensor of 1 x 4 x 32 x 98 x 98
  (plus the 1-element cancel flag every collective carries); median of ``--repeats``.
* Ray: a local Ray instance with one CPU worker actor holding the preview backend; seconds per job
  (a 1-frame job through :class:`server.cluster.RayExecutor` minus the backend's own time) and per
  streamed frame (slope over job lengths) at 64² and 784², against the backend called directly.

Several GPUs of one host (issue #24; needs a machine with 8 GPUs, random SD1.5-size weights built
on each GPU, no files):

    .venv/bin/python benchmarks/scale.py --gpus 1,2,4,8 --size 784 --steps 25 --frames 32,150,300 \\
        --modes exact,fast --out scale_gpu.json

For every N, mode and clip length: s/frame, speed-up and efficiency against N = 1, peak memory per
GPU (max over ranks), per-step reduction seconds (mean over steps, rank 0), and the largest
difference of the N-GPU frames from the 1-GPU frames (8-bit levels; exact mode should be 0 with the
default windows). Each configuration runs once after a 1-step warm-up of the same shape.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# -- CPU: reduction cost over gloo ------------------------------------------------------------------
def _reduce_rank(shapes: list[tuple], repeats: int, out: str) -> None:
    import torch.distributed as dist

    from mimo.pipeline.distributed import Sharding, init_from_env

    torch.set_num_threads(1)
    init_from_env("cpu")
    sharding = Sharding()
    result = {}
    for shape in shapes:
        x = torch.randn(shape)
        times = []
        for _ in range(repeats + 1):
            dist.barrier()
            t0 = time.perf_counter()
            sharding.reduce_sum(x)  # the cancel flag, then the sum: what a step pays
            times.append(time.perf_counter() - t0)
        result["x".join(map(str, shape))] = float(np.median(times[1:]))
    if sharding.rank == 0:
        Path(out).write_text(json.dumps(result))


def cpu_reduction(repeats: int) -> dict:
    from mimo.pipeline.distributed import spawn

    shapes = [(2, 4, 32, 98, 98), (2, 4, 150, 98, 98), (1, 4, 32, 98, 98), (1, 1, 32, 1, 1)]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        spawn(_reduce_rank, (shapes, repeats, out), nprocs=2)
        return json.loads(Path(out).read_text())


# -- CPU: Ray dispatch and streaming -----------------------------------------------------------------
def ray_overhead(repeats: int) -> dict:
    from mimo.pipeline.backends import load_backend
    from mimo.pipeline.job import GenerationJob, JobEvents
    from server.cluster import RayExecutor

    executor = RayExecutor(None, ["preview"], workers=1, local_cpus=2).start()
    local = load_backend("preview")
    slot = executor.slots[0]
    out = {}
    try:
        for side in (64, 784):
            rows = {}
            for frames in (1, 16, 64):
                rng = np.random.default_rng(0)
                job = GenerationJob(character=np.zeros((8, 8, 3), np.uint8),
                                    codes=rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8))
                ray_s, local_s = [], []
                for _ in range(repeats):
                    got = []
                    t0 = time.perf_counter()
                    executor.run(slot, "preview", job, JobEvents(frame=lambda i, im: got.append(i)), "bench")
                    ray_s.append(time.perf_counter() - t0)
                    assert got == list(range(frames))
                    t0 = time.perf_counter()
                    local.generate(job, JobEvents())
                    local_s.append(time.perf_counter() - t0)
                rows[frames] = (float(np.median(ray_s)), float(np.median(local_s)))
            per_frame = ((rows[64][0] - rows[64][1]) - (rows[16][0] - rows[16][1])) / 48
            out[side] = {"per_job_s": rows[1][0] - rows[1][1], "per_frame_s": per_frame,
                         "rows": {str(k): v for k, v in rows.items()}}
    finally:
        executor.stop()
    return out


# -- GPUs: one job over N GPUs -----------------------------------------------------------------------
def _gpu_rank(cfg: dict) -> None:
    import torch.distributed as dist

    from benchmarks.pipeline import build_pipeline, inputs
    from mimo.pipeline.distributed import Sharding, init_from_env

    device = init_from_env() or torch.device("cuda", 0)
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    results = []
    for mode in cfg["modes"]:
        dtype = torch.bfloat16 if mode == "fast" else torch.float16
        pipe = build_pipeline(False, device, dtype)
        for frames in cfg["frames"]:
            char, codes, scene = inputs(frames, cfg["size"])
            kw = dict(height=cfg["size"], width=cfg["size"], mode=mode, seed=0)
            pipe.sharding = Sharding() if world > 1 else None
            pipe(char, codes[:min(frames, 32)], scene[:min(frames, 32)], num_inference_steps=1, **kw)
            pipe.sharding = Sharding() if world > 1 else None
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            out = pipe(char, codes, scene, num_inference_steps=cfg["steps"], **kw)
            torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            peak = torch.tensor([torch.cuda.max_memory_allocated(device) / 2**30], device=device)
            if world > 1:
                dist.all_reduce(peak, op=dist.ReduceOp.MAX)
            frames_u8 = (out.frames * 255).round().astype(np.uint8)
            name = f"{mode}-{frames}"
            path = Path(cfg["tmp"]) / f"{name}-n{world}.npy"
            if rank == 0:
                np.save(path, frames_u8)
                ref = Path(cfg["tmp"]) / f"{name}-n1.npy"
                diff = (float(np.abs(np.load(ref).astype(int) - frames_u8).max())
                        if ref.exists() and world > 1 else 0.0)
                stats = pipe.sharding.stats if pipe.sharding is not None else {}
                results.append({"gpus": world, "mode": mode, "frames": frames, "s_per_frame": seconds / frames,
                                "peak_gb_per_gpu": float(peak.item()),
                                "reduce_s_per_step": stats.get("reduce_s", 0.0) / cfg["steps"],
                                "max_diff_vs_1gpu_levels": diff, "device": torch.cuda.get_device_name(device)})
        del pipe
        torch.cuda.empty_cache()
    if rank == 0:
        Path(cfg["tmp"], f"results-n{world}.json").write_text(json.dumps(results))


def gpu_scaling(args) -> list[dict]:
    from mimo.pipeline.distributed import spawn

    have = torch.cuda.device_count()
    counts = [int(n) for n in args.gpus.split(",")]
    if max(counts) > have:
        raise SystemExit(f"--gpus {args.gpus}: this host has {have} GPUs")
    tmp = args.tmp or tempfile.mkdtemp(prefix="mimo-scale-")
    cfg = dict(modes=args.modes.split(","), frames=[int(f) for f in args.frames.split(",")],
               size=args.size, steps=args.steps, tmp=tmp)
    rows = []
    for n in sorted(counts):  # N = 1 first: the reference frames
        if n == 1:
            _gpu_rank(cfg)
        else:
            spawn(_gpu_rank, (cfg,), nprocs=n)
        rows += json.loads(Path(tmp, f"results-n{n}.json").read_text())
    base = {(r["mode"], r["frames"]): r["s_per_frame"] for r in rows if r["gpus"] == 1}
    for r in rows:
        b = base.get((r["mode"], r["frames"]))
        r["speedup"] = b / r["s_per_frame"] if b else None
        r["efficiency"] = r["speedup"] / r["gpus"] if b else None
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="CPU overhead figures (gloo reduction, Ray)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--gpus", default=None, help="comma list of GPU counts, e.g. 1,2,4,8")
    p.add_argument("--size", type=int, default=784)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--frames", default="32,150,300")
    p.add_argument("--modes", default="exact,fast")
    p.add_argument("--tmp", default=None, help="folder for the frames compared across N")
    p.add_argument("--out", default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)
    figures: dict = {}
    if args.cpu or not args.gpus:
        import platform

        cpu = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        red = cpu_reduction(args.repeats)
        figures["reduction_gloo_2proc_s"] = red
        for shape, s in red.items():
            mb = np.prod([int(d) for d in shape.split("x")]) * 4 / 1e6
            print(f"[{cpu}] gloo all-reduce, 2 processes, {shape} fp32 ({mb:.1f} MB): {s * 1e3:.1f} ms")
        ray_fig = ray_overhead(max(3, args.repeats // 2))
        figures["ray"] = ray_fig
        for side, f in ray_fig.items():
            print(f"[{cpu}] Ray worker (preview backend), {side}x{side} frames: "
                  f"{f['per_job_s'] * 1e3:.1f} ms per job, {f['per_frame_s'] * 1e3:.2f} ms per streamed frame "
                  f"(over calling the backend in-process)")
    if args.gpus:
        rows = gpu_scaling(args)
        figures["gpus"] = rows
        for r in rows:
            sp = f"{r['speedup']:.2f}x, efficiency {r['efficiency']:.0%}" if r["speedup"] else "-"
            print(f"[{r['device']}] {r['gpus']} GPU {r['mode']:>5} {r['frames']:>3} frames {args.size}² "
                  f"{args.steps} steps: {r['s_per_frame']:.3f} s/frame, speed-up {sp}, peak "
                  f"{r['peak_gb_per_gpu']:.1f} GB/GPU, reduce {r['reduce_s_per_step'] * 1e3:.1f} ms/step, "
                  f"max diff vs 1 GPU {r['max_diff_vs_1gpu_levels']:.0f} levels")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
