"""Forward time of the open body (our batched LBS) for 1, 64 and 300 frames.

    .venv/bin/python benchmarks/body.py --device cpu
    .venv/bin/python benchmarks/body.py --device cuda --dtype float32 float64

The poses are the shipped walk clip (examples/motions/walk.npz), repeated to the frame count.
Each figure is the median (and best) of --repeats timed calls after one warm-up call, CUDA synchronised,
printed with the device name. On CUDA the peak memory of one call is printed too. Nothing is
asserted.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimo.body import load_body
from mimo.motion import MotionClip

WALK = Path(__file__).resolve().parents[1] / "examples" / "motions" / "walk.npz"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 64, 300])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = device_name(device)
    track = MotionClip.load(WALK).bodies[0]
    for dt in args.dtype:
        dtype = getattr(torch, dt)
        body = load_body("open", device=device, dtype=dtype)
        print(f"[{name}] open body: {body.num_vertices} vertices, {body.faces.shape[0]} triangles,"
              f" {body.num_joints} joints, {body.num_betas} betas, {dt}")
        for F in args.frames:
            idx = np.arange(F) % track.num_frames
            t = lambda a: torch.as_tensor(a[idx], dtype=dtype, device=device)  # noqa: E731
            params = dict(global_orient=t(track.global_orient), body_pose=t(track.body_pose),
                          transl=t(track.transl),
                          betas=torch.zeros(F, body.num_betas, dtype=dtype, device=device))

            def call():
                with torch.inference_mode():
                    body(**params)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            call()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            med = statistics.median(times)
            line = (f"[{name}] {dt} forward {F:4d} frames: median {med * 1e3:9.2f} ms "
                    f"(best {min(times) * 1e3:.2f} ms; {med / F * 1e3:.3f} ms/frame, "
                    f"{F / med:8.1f} frames/s)")
            if device.type == "cuda":
                line += f", peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
