"""Decompose a synthetic clip with its true keypoints, mask and depth, and measure the fit.

The clip comes from `mimo dataset synth` (our own rasterizer: a procedural character on a
static background, with occluders crossing in front); the observations are its ground truth
(:class:`mimo.decompose.synthetic.TruthObserver`), so this measures the fit, scene, occlusion
and output stages, not the models. It writes the README's contact sheet with --sheet.

    PYTHONPATH=. python benchmarks/decompose_synth.py --frames 24 --size 192 --sheet docs/decompose_contact_sheet.png
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--noise", type=float, default=0.0, help="Gaussian noise on the keypoints (pixels)")
    ap.add_argument("--sheet", default=None, help="copy the contact sheet here")
    ap.add_argument("--motion-out", default=None, help="copy the decomposed motion.npz here (Blender test fixture)")
    args = ap.parse_args()
    from mimo.body import load_body
    from mimo.data.synth import synth_dataset
    from mimo.decompose.io import ArraySource
    from mimo.decompose.pipeline import Options, decompose
    from mimo.decompose.synthetic import TruthObserver
    from mimo.motion import load_npz

    work = Path(tempfile.mkdtemp(prefix="mimo-decompose-bench-"))
    try:
        (clip_dir,) = synth_dataset(work / "synth", seed=args.seed, clips=1, frames=args.frames, size=args.size,
                                    occluder_prob=1.0)
        obs = TruthObserver(clip_dir)
        if args.noise:
            obs.keypoints[..., :2] += np.random.default_rng(0).normal(0, args.noise, obs.keypoints[..., :2].shape)
        t = time.perf_counter()
        report = decompose(ArraySource(np.asarray(obs.clip.frames), 30.0), work / "out", obs,
                           Options(focal=float(obs.camera.K[0, 0, 0]), keypoint_px=max(args.noise, 0.3),
                                   min_area=8, grow=2))
        total = time.perf_counter() - t
        motion, camera = load_npz(work / "out" / "motion.npz")
        body = load_body("open")
        p = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in motion.bodies[0].params().items()}
        joints = body(**p).joints[:, :22].double().numpy() @ camera.R[0].T + camera.t[0]
        err = np.linalg.norm(joints - obs.joints_cam, axis=-1)
        print(json.dumps({"frames": args.frames, "size": args.size, "noise_px": args.noise,
                          "joint_error_cm_mean": round(float(err.mean()) * 100, 2),
                          "joint_error_cm_median": round(float(np.median(err)) * 100, 2),
                          "seconds_per_frame": report["seconds_per_frame"], "total_s": round(total, 1)}, indent=1))
        if args.sheet:
            shutil.copy(work / "out" / "contact_sheet.png", args.sheet)
            print(f"contact sheet: {args.sheet}")
        if args.motion_out:
            shutil.copy(work / "out" / "motion.npz", args.motion_out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
