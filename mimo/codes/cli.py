"""``mimo codes``: render a motion clip to structured motion code frames (mp4 or PNG folder).

    mimo codes --motion walk.npz --size 784x784 --out walk_codes.mp4
    mimo codes --motion walk.npz --camera cam.npz --no-hands --frames 0:48 --out frames/

Camera (the same rule as ``mimo generate --motion``, :func:`choose_camera`): ``--camera FILE``
(a mimo.motion .npz holding a camera track); else ``--auto-camera`` (a fixed front view framing the
whole motion, official focal length); else the camera stored in the motion file; else that same
auto-framing. ``--official-camera`` asks for the official default camera instead (origin, looking
along +Z, focal 5000/256·max(W, H)), for bodies already placed in camera space by their
``transl`` as the official HMR2-derived data was. The command says which camera it used.
"""
from __future__ import annotations

import argparse
import logging
import sys

from mimo.cli_errors import (
    NPZ,
    UsageError,
    argument,
    check_device,
    frames_type,
    input_file,
    output_path,
    save_frames,
    size_type,
)

log = logging.getLogger(__name__)
DEFAULT_SIZE = (784, 784)


def add_motion_arguments(p: argparse.ArgumentParser, official: bool) -> None:
    """--camera / --auto-camera [/ --official-camera], --body, --frames: shared with mimo generate."""
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--camera", metavar="CAM.npz", help="camera track (.npz in the mimo.motion format)")
    cam.add_argument("--auto-camera", action="store_true",
                     help="frame the whole motion (front view) even when the motion file has a camera")
    if official:
        cam.add_argument("--official-camera", action="store_true",
                         help="the official default camera at the origin (bodies placed in camera space)")
    p.add_argument("--body", default="open",
                   help="body model: open (default), smpl, smplh, smplx or a model file path")
    p.add_argument("--frames", type=frames_type, metavar="START:END[:STEP]",
                   help="use only these frames of the motion (END exclusive; a STEP divides the fps)")


def load_motion(args) -> tuple:
    """(clip, camera stored in the file or None) of ``--motion``, cut by ``--frames``."""
    from mimo.motion import load_npz
    from mimo.motion.cli import take_frames

    path = input_file("--motion", args.motion, "a motion clip .npz (mimo motion convert makes one)", NPZ)
    with argument("--motion"):
        clip, stored = load_npz(path)
    if clip is None:
        raise UsageError("--motion", f"{str(path)!r} holds a camera track but no motion clip")
    if getattr(args, "frames", None) is not None:
        clip, stored = take_frames(clip, stored, args.frames)
    return clip, stored


def choose_camera(args, clip, camera, body, size: tuple[int, int] | None):
    """The camera for ``clip`` (``camera``: the one stored in the motion file, or None): a
    CameraTrack (or None: the official camera), the output size and a sentence naming the camera.
    ``size`` None: the camera's size, else 784x784."""
    from mimo.codes.render import auto_camera_track
    from mimo.motion import CameraTrack
    from mimo.motion.cli import take_frames

    name = args.motion
    if args.camera:
        path = input_file("--camera", args.camera, "a camera track .npz", NPZ)
        with argument("--camera"):
            camera = CameraTrack.load(path)
        frames = getattr(args, "frames", None)
        if frames is not None and camera.num_frames > 1:
            _, camera = take_frames(None, camera, frames)
        if camera.num_frames not in (1, clip.num_frames):
            raise UsageError("--camera", f"has {camera.num_frames} frames, expected 1 or "
                                         f"{clip.num_frames} like the motion")
        what = f"camera from {args.camera}"
    elif getattr(args, "official_camera", False):
        camera = None
        what = "the official default camera at the origin"
    elif camera is not None and not args.auto_camera:
        what = f"camera stored in {name}"
    else:
        W, H = size or DEFAULT_SIZE
        camera = auto_camera_track(clip, body, W, H)
        why = "--auto-camera" if args.auto_camera else f"{name} has no camera"
        what = f"auto-framed front camera ({why})"
    if size is None:
        size = (camera.width, camera.height) if camera is not None else DEFAULT_SIZE
    return camera, size, what


def load_body_arg(spec: str, device):
    from mimo.body import load_body

    with argument("--body"):
        return load_body(spec, device=device)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--motion", required=True, help="motion clip (.npz in the mimo.motion format)")
    add_motion_arguments(p, official=True)
    p.add_argument("--codes", help="vertex colour table, e.g. the official sdc_info.npy "
                                   "(default: the body's normalised rest coordinates)")
    p.add_argument("--no-hands", action="store_true",
                   help="remove both hands of every body (without it, a hand the motion has no pose for is "
                        "removed, as the official renderer did for undetected hands, and posed hands are kept)")
    p.add_argument("--size", type=size_type, default=None,
                   help="output WIDTHxHEIGHT (default: the camera's size, else 784x784)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", required=True, help="OUT.mp4, or a folder for PNG frames")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from mimo.codes.render import render_clip
    from mimo.codes.tables import load_sdc_table
    from mimo.progress import Progress

    output_path("--out", args.out, args.overwrite, size=args.size)
    device = check_device("--device", args.device)
    clip, stored = load_motion(args)  # the cheap checks first: a bad --motion fails before the body loads
    body = load_body_arg(args.body, device)
    table = None
    if args.codes:
        path = input_file("--codes", args.codes, "a vertex colour table (.npy or .npz)",
                          ("a NumPy .npy array", "a NumPy .npz archive"))
        with argument("--codes"):
            table = load_sdc_table(path, num_vertices=body.num_vertices)
    camera, size, what = choose_camera(args, clip, stored, body, args.size)
    output_path("--out", args.out, args.overwrite, size=size)  # the camera's size may be odd
    print(f"{clip.num_frames} frames at {size[0]}x{size[1]}; {what}", file=sys.stderr)
    with Progress("motion codes", clip.num_frames, unit="frame", quiet=args.quiet) as bar:
        hands = True if args.no_hands else "auto"  # the front ends' rule (mimo.pipeline.prepare)
        codes, mask = render_clip(clip, camera, body, table, remove_hands=hands, size=size,
                                  progress=lambda done, total: bar.update(done))
    if not mask.any():
        log.warning("no body is visible in any frame: check the camera (try --auto-camera)")
    paths = save_frames("--out", args.out, codes, clip.fps, args.overwrite)
    print(f"wrote {len(codes)} frames ({codes.shape[2]}x{codes.shape[1]}, {clip.fps:g} fps) to "
          f"{paths[0] if len(paths) == 1 else args.out}; body covers {mask.mean():.1%} of pixels")
    return 0
