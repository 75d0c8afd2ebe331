"""``mimo motion``: convert motion files to our clip format, resample them, and describe them.

    mimo motion info walk.npz
    mimo motion convert AMASS_seq_poses.npz walk.npz --fps 30           # AMASS (Z up -> Y up)
    mimo motion convert take.bvh take.npz --preset cmu_bvh --fps 30      # BVH, retargeted
    mimo motion convert hmr2_params.npz shot.npz --size 1280x720         # HMR2 params + camera
    mimo motion export-rig rig.npz --body open                           # rig file for the add-on
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

KINDS = ("auto", "clip", "amass", "hmr2", "bvh")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="describe a motion .npz (clip and/or camera)")
    info.add_argument("path")
    conv = sub.add_parser("convert", help="AMASS .npz, HMR2 params .npz, BVH or clip -> clip .npz")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.add_argument("--kind", choices=KINDS, default="auto", help="input kind (default: guess)")
    conv.add_argument("--fps", type=float, default=None, help="resample to this rate")
    conv.add_argument("--preset", default=None,
                      help="BVH bone map: mixamo, rigify, cmu_bvh or smpl (default: detect)")
    conv.add_argument("--input-fps", type=float, default=30.0, help="frame rate of HMR2 params")
    conv.add_argument("--size", default=None, help="WxH of the HMR2 video: also write its camera")
    rig = sub.add_parser("export-rig", help="write the numpy-only rig file the Blender add-on reads")
    rig.add_argument("output")
    rig.add_argument("--body", default="open", help="open, smpl, smplh, smplx or a model file")


def _guess(path: Path) -> str:
    if path.suffix.lower() == ".bvh":
        return "bvh"
    with np.load(path, allow_pickle=False) as d:
        keys = set(d.files)
    if "format" in keys:
        return "clip"
    if "poses" in keys and "trans" in keys:
        return "amass"
    if "body_pose" in keys and "global_orient" in keys:
        return "hmr2"
    raise ValueError(f"input: cannot tell what {path} is (keys {sorted(keys)[:8]}); pass --kind")


def run(args: argparse.Namespace) -> int:
    from . import CameraTrack, MotionClip, load_npz, read_amass, read_bvh_clip, read_smpl_params
    from .clip import save_npz

    if args.action == "info":
        clip, camera = load_npz(args.path)
        if clip is not None:
            print(f"clip: {clip.num_frames} frames at {clip.fps:g} fps ({clip.duration:.2f} s), "
                  f"{len(clip.bodies)} bod{'y' if len(clip.bodies) == 1 else 'ies'}")
            for i, b in enumerate(clip.bodies):
                hands = "hands" if b.left_hand_pose is not None else "no hands"
                print(f"  body{i} {b.name!r}: model {b.model}, body_pose {b.body_pose.shape[1]} "
                      f"joints, {len(b.betas)} betas, {hands}, pelvis path from "
                      f"{np.round(b.transl[0], 3).tolist()} to {np.round(b.transl[-1], 3).tolist()}")
        if camera is not None:
            print(f"camera: {camera.num_frames} frames, {camera.width}x{camera.height}, "
                  f"fx {camera.K[0, 0, 0]:.1f}")
        return 0
    if args.action == "export-rig":
        from mimo.body import export_rig_data, load_body

        export_rig_data(load_body(args.body), args.output)
        print(f"wrote {args.output}")
        return 0

    src = Path(args.input)
    kind = _guess(src) if args.kind == "auto" else args.kind
    camera: CameraTrack | None = None
    if kind == "clip":
        clip, camera = load_npz(src)
        if clip is None:
            raise ValueError(f"input: {src} holds no clip")
    elif kind == "amass":
        clip = read_amass(src)
    elif kind == "bvh":
        clip = read_bvh_clip(src, bone_map=args.preset)
    else:
        w = h = None
        if args.size:
            w, h = (int(v) for v in args.size.lower().split("x"))
        clip, camera = read_smpl_params(src, fps=args.input_fps, width=w, height=h)
    if args.fps is not None:
        clip = clip.resample(args.fps)
        camera = camera.resample(args.fps) if camera is not None else None
    if not isinstance(clip, MotionClip):
        raise ValueError("input: nothing to write")
    save_npz(args.output, clip=clip, camera=camera)
    print(f"wrote {args.output}: {clip.num_frames} frames at {clip.fps:g} fps ({kind})")
    return 0
