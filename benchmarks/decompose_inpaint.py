"""Seconds and peak memory of `mimo decompose --inpaint-model` on one scene plate: a WxH plate
with a person-shaped hole (a box of --hole of the height) filled by a diffusers inpainting
pipeline; also the OpenCV fill for comparison. The work is one region around the hole at the
model's native size, so the figures do not depend on the clip's length.

    PYTHONPATH=. python benchmarks/decompose_inpaint.py --model DIR_OR_ID [--device cuda] [--size 1280x720]
    PYTHONPATH=. python benchmarks/decompose_inpaint.py --tiny   # the tests' tiny random pipeline
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="diffusers inpainting pipeline folder or cached hub id")
    ap.add_argument("--tiny", action="store_true", help="use the tests' tiny random pipeline")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--hole", type=float, default=0.6, help="hole height as a fraction of the plate's")
    ap.add_argument("--steps", type=int, default=25)
    args = ap.parse_args()
    if (args.model is None) == (not args.tiny):
        ap.error("give --model or --tiny")
    from mimo.decompose.inpaint import DiffusersInpainter
    from mimo.decompose.scene import inpaint

    model = args.model
    if args.tiny:
        from mimo.decompose.tiny import save_tiny_inpainter

        model = str(save_tiny_inpainter(tempfile.mkdtemp() + "/pipeline"))
    W, H = map(int, args.size.split("x"))
    y, x = np.mgrid[0:H, 0:W]
    plate = np.stack([100 + 60 * np.sin(x / 40), 120 + 50 * np.cos(y / 30), 80 + (x + y) % 90], -1).astype(np.uint8)
    holes = np.zeros((H, W), bool)
    hh, hw = int(args.hole * H), int(args.hole * H * 0.4)
    holes[(H - hh) // 2:(H + hh) // 2, (W - hw) // 2:(W + hw) // 2] = True
    t = time.perf_counter()
    inpaint(plate, holes)
    opencv_s = time.perf_counter() - t
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    inpainter = DiffusersInpainter(model, device=args.device, steps=args.steps)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    out = inpainter(plate, holes)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    y0, y1, x0, x1 = inpainter.region(holes)
    print(json.dumps({
        "model": model, "device": args.device, "plate": args.size, "hole_pixels": int(holes.sum()),
        "region": [int(y1 - y0), int(x1 - x0)], "working_size": list(inpainter.working_size(y1 - y0, x1 - x0)),
        "steps": args.steps, "load_s": round(load_s, 2), "inpaint_s": round(time.perf_counter() - t, 2),
        "opencv_s": round(opencv_s, 3), "kept_exactly": bool(np.array_equal(out[~holes], plate[~holes])),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.device.startswith("cuda") else None,
    }))


if __name__ == "__main__":
    main()
