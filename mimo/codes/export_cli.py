"""``mimo export``: control passes of a motion clip for other pose-driven video models (the files
the Blender add-on's *Export Passes* writes), from the 3D bodies rather than estimated from video.

    mimo export --motion walk.npz --size 512x512 --out walk_passes/
    mimo export --motion walk.npz --camera cam.npz --frames 0:48 --out passes/

Camera: the rule of ``mimo codes`` (``--camera``, else the one stored in the motion file, else
auto-framing). Written into OUT (a new or empty folder; ``--overwrite`` replaces these files):

* ``shot.npz`` — per body ``body<i>_global_orient`` (F, 3), ``body<i>_body_pose`` (F, n, 3),
  ``body<i>_transl`` (F, 3), ``body<i>_betas`` (F, K), hand poses when the clip has them (SMPL
  axes); ``body_model``; OpenCV cameras ``K``, ``R``, ``t`` (``x_cam = R x_world + t``);
  ``width``, ``height``, ``fps``, ``frames``;
* ``mask/frame_00000.png`` ... — white where a body is seen;
* ``keypoints/frame_00000.json`` ... — joints as OpenPose JSON (BODY_25 and hands; the 70 face
  points too for an SMPL-X body whose model file has landmark tables, :mod:`mimo.body.face`);
* ``depth.npy`` (F, H, W) float32 metres along the optical axis, 0 where no body;
  ``normal.npy`` (F, H, W, 3) float32 camera-space unit normals, 0 where no body;
* ``depth/frame_00000.png`` (16-bit, millimetres) and ``normal/frame_00000.png`` (8-bit RGB
  normal map) ... — the same as images (:mod:`mimo.codes.pass_images`, shared with the add-on).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mimo.cli_errors import UsageError, check_device, size_type

from .cli import add_motion_arguments, choose_camera, load_body_arg, load_motion


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--motion", required=True, help="motion clip (.npz in the mimo.motion format)")
    add_motion_arguments(p, official=False)
    p.add_argument("--size", type=size_type, default=None,
                   help="output WIDTHxHEIGHT (default: the camera's size, else 784x784)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", required=True, help="folder to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError("--out", f"{str(out)!r} is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError("--out", f"{str(out)!r} is not empty (add --overwrite to replace an export)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".mimo-write-test").touch()
        (out / ".mimo-write-test").unlink()
    except OSError as exc:
        raise UsageError("--out", f"cannot write to {str(out)!r} ({exc.strerror})") from None


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from mimo.progress import Progress

    from .keypoints import openpose_frame
    from .pass_images import write_pass_images
    from .passes import render_passes

    out = Path(args.out)
    device = check_device("--device", args.device)
    clip, stored = load_motion(args)
    _check_out(out, args.overwrite)
    body = load_body_arg(args.body, device)
    camera, size, what = choose_camera(args, clip, stored, body, args.size)
    print(f"{clip.num_frames} frames at {size[0]}x{size[1]}; {what}", file=sys.stderr)
    with Progress("passes", clip.num_frames, unit="frame", quiet=args.quiet) as bar:
        p = render_passes(clip, camera, body, size, progress=lambda done, total: bar.update(done))
    W, H = p["width"], p["height"]
    arrays = {"body_model": np.array(args.body), "fps": np.array(clip.fps),
              "frames": np.arange(clip.num_frames), "K": p["K"], "R": p["R"], "t": p["t"],
              "width": np.array(W), "height": np.array(H)}
    for i, track in enumerate(clip.bodies):
        arrays.update({f"body{i}_{k}": np.asarray(v, np.float32) for k, v in track.params().items()})
    for sub in ("mask", "keypoints"):
        (out / sub).mkdir(exist_ok=True)
    for i in range(clip.num_frames):
        Image.fromarray(np.repeat(p["mask"][i, ..., None].astype(np.uint8) * 255, 3, axis=2)).save(
            out / "mask" / f"frame_{i:05d}.png")
        frame = openpose_frame(p["joints"][i], p["K"][i], p["R"][i], p["t"][i], W, H)
        (out / "keypoints" / f"frame_{i:05d}.json").write_text(json.dumps(frame))
    np.savez(out / "shot.npz", **arrays)
    np.save(out / "depth.npy", p["depth"])
    np.save(out / "normal.npy", p["normal"])
    write_pass_images(str(out), p["depth"], p["normal"], overwrite=True)  # (--out was checked first)
    print(f"wrote {clip.num_frames} frames of passes ({W}x{H}, {len(clip.bodies)} bodies) to {out}; "
          f"bodies cover {p['mask'].mean():.1%} of pixels")
    return 0
