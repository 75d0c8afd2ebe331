"""Seconds per frame of each model stage of `mimo decompose` on this machine, with the real
architectures' default sizes (RT-DETR R50, SAM ViT-B, ViTPose-B, Depth Anything small) and
random weights (timing only: no weights are downloaded).

    PYTHONPATH=. python benchmarks/decompose_models.py --frames 2 --size 640x360 [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from mimo.decompose import stages
    from mimo.decompose.models import Loaded
    from mimo.decompose.tiny import build

    W, H = map(int, args.size.split("x"))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(args.frames)]
    boxes = np.tile(np.array([[W * 0.3, H * 0.1, W * 0.6, H * 0.95, 1.0]]), (args.frames, 1))
    calls = {"detector": lambda m: stages.detect(m, frames, 0.5),
             "segmenter": lambda m: stages.segment(m, frames, boxes),
             "pose": lambda m: stages.keypoints(m, frames, boxes),
             "depth": lambda m: stages.depth(m, frames)}
    out = {"device": args.device, "size": args.size, "threads": torch.get_num_threads()}
    for stage, call in calls.items():
        torch.manual_seed(0)
        model, proc = build(stage, full=True)
        m = Loaded(stage, model.to(args.device).eval(), proc, args.device)
        call(m)  # warm-up
        t = time.perf_counter()
        call(m)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        out[stage] = round((time.perf_counter() - t) / args.frames, 3)
        print(stage, out[stage], "s/frame", flush=True)
        del m, model
    print(json.dumps(out))


if __name__ == "__main__":
    main()
