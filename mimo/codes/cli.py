"""``mimo codes``: render a motion clip to structured motion code frames (mp4 or PNG folder).

    mimo codes --motion walk.npz --auto-camera --size 784x784 --out walk_codes.mp4
    mimo codes --motion walk.npz --camera cam.npz --no-hands --out frames/

Camera choice: ``--camera FILE`` (a mimo.motion .npz holding a camera track); else
``--auto-camera`` (a fixed front view framing the whole motion, official focal length); else the
camera stored in the motion file if it has one; else the official default camera (origin, looking
along +Z, focal 5000/256·max(W, H)), which expects bodies already placed in camera space by their
``transl`` as the official HMR2-derived data was.
"""
from __future__ import annotations

import argparse
import logging
import re

log = logging.getLogger(__name__)


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 784x784, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--motion", required=True, help="motion clip (.npz in the mimo.motion format)")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--camera", help="camera track (.npz in the mimo.motion format)")
    cam.add_argument("--auto-camera", action="store_true", help="frame the whole motion (front view)")
    p.add_argument("--body", default="open",
                   help="body model: open (default), smpl, smplh, smplx or a model file path")
    p.add_argument("--codes", help="vertex colour table, e.g. the official sdc_info.npy "
                                   "(default: the body's normalised rest coordinates)")
    p.add_argument("--no-hands", action="store_true", help="remove the hands (as the official "
                                                           "renderer did for undetected hands)")
    p.add_argument("--size", type=parse_size, default=None,
                   help="output WIDTHxHEIGHT (default: the camera's size, else 784x784)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", required=True, help="OUT.mp4, or a folder for PNG frames")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from mimo.body import load_body
    from mimo.codes.clip import auto_camera_track, render_clip
    from mimo.codes.tables import load_sdc_table
    from mimo.motion import CameraTrack, load_npz
    from mimo.video import write_frames

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    clip, stored_camera = load_npz(args.motion)
    if clip is None:
        raise ValueError(f"motion: {args.motion} holds no motion clip")
    body = load_body(args.body, device=device)
    table = None
    if args.codes:
        table = load_sdc_table(args.codes, num_vertices=body.num_vertices)
    size = args.size
    if args.camera:
        camera = CameraTrack.load(args.camera)
    elif args.auto_camera:
        W, H = size or (784, 784)
        camera = auto_camera_track(clip, body, W, H)
    elif stored_camera is not None:
        camera = stored_camera
    else:
        camera = None
        size = size or (784, 784)
        log.warning("no camera given: using the official default camera at the origin; bodies must "
                    "be placed in front of it by transl (use --auto-camera to frame them)")
    with tqdm(total=clip.num_frames, unit="frame", desc="motion codes") as bar:
        codes, mask = render_clip(clip, camera, body, table, remove_hands=args.no_hands, size=size,
                                  progress=lambda done, total: bar.update(done - bar.n))
    if not mask.any():
        log.warning("no body is visible in any frame: check the camera (try --auto-camera)")
    paths = write_frames(args.out, codes, fps=clip.fps, overwrite=args.overwrite)
    print(f"wrote {len(codes)} frames ({codes.shape[2]}x{codes.shape[1]}, {clip.fps:g} fps) to "
          f"{paths[0] if len(paths) == 1 else args.out}; body covers {mask.mean():.1%} of pixels")
    return 0
