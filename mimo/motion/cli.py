"""``mimo motion``: convert motion files to our clip format, resample them, and describe them.

    mimo motion info walk.npz
    mimo motion convert AMASS_seq_poses.npz walk.npz --fps 30           # AMASS (Z up -> Y up)
    mimo motion convert take.bvh take.npz --preset cmu_bvh --fps 30      # BVH, retargeted
    mimo motion convert hmr2_params.npz shot.npz --size 1280x720         # HMR2 params + camera
    mimo motion convert walk.npz first_second.npz --frames 0:30          # a part of a clip
    mimo motion export-rig rig.npz --body open                           # rig file for the add-on

Outputs are never replaced without ``--overwrite`` (as in every mimo command).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from mimo.cli_errors import NPZ, UsageError, argument, frames_type, input_file, output_path, positive_float, size_type

KINDS = ("auto", "clip", "amass", "hmr2", "bvh")
PRESETS = ("mixamo", "rigify", "cmu_bvh", "smpl")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="describe a motion .npz (clip and/or camera)")
    info.add_argument("path")
    conv = sub.add_parser("convert", help="AMASS .npz, HMR2 params .npz, BVH or clip -> clip .npz")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.add_argument("--kind", choices=KINDS, default="auto", help="input kind (default: guess)")
    conv.add_argument("--fps", type=positive_float, default=None, help="resample to this rate")
    conv.add_argument("--preset", choices=PRESETS, default=None, help="BVH bone map (default: detect)")
    conv.add_argument("--input-fps", type=positive_float, default=30.0, help="frame rate of HMR2 params")
    conv.add_argument("--size", type=size_type, default=None, help="WxH of the HMR2 video: also write its camera")
    conv.add_argument("--frames", type=frames_type, metavar="START:END[:STEP]",
                      help="keep only these frames of the input (before --fps resampling)")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    rig = sub.add_parser("export-rig", help="write the numpy-only rig file the Blender add-on reads")
    rig.add_argument("output")
    rig.add_argument("--body", default="open", help="open, smpl, smplh, smplx or a model file")
    rig.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    for action in (info, conv, rig):
        action.set_defaults(_prog=action.prog)


def take_frames(clip, camera, frames: slice, arg: str = "--frames"):
    """``clip`` and ``camera`` (either may be None) cut to ``frames`` (a slice; a step divides the
    fps). A camera of one frame is kept as it is."""
    n = clip.num_frames if clip is not None else camera.num_frames
    index = np.arange(n)[frames]
    if not len(index):
        raise UsageError(arg, f"selects no frame of the {n}-frame motion")
    step = frames.step or 1
    if clip is not None:
        per_frame = lambda b, k: getattr(b, k) is not None and (k != "betas" or np.ndim(b.betas) == 2)  # noqa: E731
        bodies = [dataclasses.replace(b, **{k: getattr(b, k)[index] for k in (
            "global_orient", "body_pose", "transl", "betas", "left_hand_pose", "right_hand_pose")
            if per_frame(b, k)}) for b in clip.bodies]
        clip = dataclasses.replace(clip, fps=clip.fps / step, bodies=bodies).validate()
    if camera is not None and camera.num_frames > 1:
        if camera.num_frames != n:
            raise UsageError(arg, f"the camera has {camera.num_frames} frames, the motion {n}")
        camera = dataclasses.replace(camera, K=camera.K[index], R=camera.R[index], t=camera.t[index],
                                     fps=camera.fps / step).validate()
    return clip, camera


def _guess(path: Path) -> str:
    if path.suffix.lower() == ".bvh":
        return "bvh"
    input_file("input", path, "a BVH file or a motion .npz (clip, AMASS or HMR2 parameters)", NPZ)
    with argument("input"), np.load(path, allow_pickle=False) as d:
        keys = set(d.files)
    if "format" in keys:
        return "clip"
    if "poses" in keys and "trans" in keys:
        return "amass"
    if "body_pose" in keys and "global_orient" in keys:
        return "hmr2"
    raise UsageError("input", f"cannot tell what {str(path)!r} is (keys {sorted(keys)[:8]}); pass --kind")


def _info(args) -> int:
    from . import load_npz

    path = input_file("path", args.path, "a motion clip or camera .npz", NPZ)
    with argument("path"):
        clip, camera = load_npz(path)
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


def _convert(args) -> int:
    from . import CameraTrack, load_npz, read_amass, read_bvh_clip, read_smpl_params
    from .clip import save_npz

    output_path("output", args.output, args.overwrite, suffixes=(".npz",))
    src = Path(args.input)
    kind = _guess(src) if args.kind == "auto" else args.kind
    if kind == "bvh":
        input_file("input", src, "a BVH file (text starting with HIERARCHY)", ("a BVH file",))
    else:
        input_file("input", src, f"a {kind} .npz", NPZ)
    camera: CameraTrack | None = None
    with argument("input"):
        if kind == "clip":
            clip, camera = load_npz(src)
        elif kind == "amass":
            clip = read_amass(src)
        elif kind == "bvh":
            clip = read_bvh_clip(src, bone_map=args.preset)
        else:
            w, h = args.size or (None, None)
            clip, camera = read_smpl_params(src, fps=args.input_fps, width=w, height=h)
    if clip is None:
        raise UsageError("input", f"{str(src)!r} holds no motion clip")
    if args.frames is not None:
        clip, camera = take_frames(clip, camera, args.frames)
    if args.fps is not None:
        clip = clip.resample(args.fps)
        camera = camera.resample(args.fps) if camera is not None else None
    save_npz(args.output, clip=clip, camera=camera)
    print(f"wrote {args.output}: {clip.num_frames} frames at {clip.fps:g} fps ({kind})")
    return 0


def _export_rig(args) -> int:
    from mimo.body import export_rig_data
    from mimo.codes.cli import load_body_arg

    output_path("output", args.output, args.overwrite, suffixes=(".npz",))
    export_rig_data(load_body_arg(args.body, None), args.output)
    print(f"wrote {args.output}")
    return 0


def run(args: argparse.Namespace) -> int:
    action = {"info": _info, "convert": _convert, "export-rig": _export_rig}[args.action]
    return action(args)
