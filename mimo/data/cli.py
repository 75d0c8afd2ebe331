"""``mimo dataset``: make the synthetic yardstick dataset, and check a dataset folder.

    mimo dataset synth data/train --clips 32 --frames 32 --size 128 --seed 0
    mimo dataset synth data/test --split test --clips 8 --seed 0     # held-out characters, views
    mimo dataset check data/train

``check`` reads every clip folder (:func:`mimo.data.layout.read_clip`), prints one line per broken
clip naming the file, then the counts; exit status 1 if any clip is broken, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

from mimo.cli_errors import UsageError, int_range, positive_float


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected N or WIDTHxHEIGHT such as 128 or 128x96, got {text!r}")
    w = int(m.group(1))
    h = int(m.group(2) or w)
    if not (16 <= w <= 2048 and 16 <= h <= 2048):
        raise argparse.ArgumentTypeError(f"expected width and height in 16..2048, got {text!r}")
    return w, h


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    synth = sub.add_parser("synth", help="render the synthetic yardstick dataset (open body, "
                                         "procedural clothes, mocap and procedural motion)")
    synth.add_argument("out", metavar="OUT", help="dataset folder to create (one folder per clip)")
    synth.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0, help="random seed (default 0)")
    synth.add_argument("--clips", type=int_range(1, 100000), default=32, help="number of clips (default 32)")
    synth.add_argument("--frames", type=int_range(1, 1000), default=32, help="frames per clip (default 32)")
    synth.add_argument("--size", type=_size, default=(128, 128), help="N or WxH pixels (default 128)")
    synth.add_argument("--split", choices=("train", "test"), default="train",
                       help="test: independent draws and held-out camera yaws (default train)")
    synth.add_argument("--characters", type=int_range(1, 10000), default=8,
                       help="characters in this split (default 8)")
    synth.add_argument("--fps", type=positive_float, default=30.0, help="frame rate (default 30)")
    synth.add_argument("--occluders", type=float, default=0.5, metavar="P",
                       help="probability that a clip has occluders (default 0.5)")
    synth.add_argument("--device", default="cpu", help="rasterize on cpu (default) or cuda")
    synth.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT (clip folders of the same names are replaced, others kept)")
    check = sub.add_parser("check", help="validate every clip of a dataset folder and print counts")
    check.add_argument("dir", metavar="DIR", help="dataset folder (or one clip folder)")
    for action in (synth, check):
        action.set_defaults(_prog=action.prog)


def _synth(args) -> int:
    from mimo.cli_errors import check_device
    from mimo.data.synth import synth_dataset

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError("OUT", f"{str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UsageError("OUT", f"{str(out)!r} is not empty (pass --overwrite to write into it)")
    if not 0 <= args.occluders <= 1:
        raise UsageError("--occluders", f"expected a probability in [0, 1], got {args.occluders}")
    device = check_device("--device", args.device)
    try:  # before any rendering: a folder that cannot be made must not cost the work
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError("OUT", f"cannot create {str(out)!r} ({exc.strerror or exc})") from None
    start = time.monotonic()
    written = [0]

    def progress(done: int, total: int, folder: Path) -> None:
        written[0] = done
        print(f"clip {done}/{total}: {folder.name} ({time.monotonic() - start:.1f} s)",
              file=sys.stderr, flush=True)

    try:
        folders = synth_dataset(out, seed=args.seed, clips=args.clips, frames=args.frames, size=args.size,
                                split=args.split, characters=args.characters, fps=args.fps,
                                occluder_prob=args.occluders, device=device, progress=progress)
    except KeyboardInterrupt:
        print(f"stopped: {written[0]} of {args.clips} clips written to {out} (each whole; the same "
              "command with --overwrite makes them all again)", file=sys.stderr, flush=True)
        raise
    mb = sum(f.stat().st_size for d in folders for f in d.iterdir()) / 1e6
    w, h = args.size
    print(f"wrote {len(folders)} clips of {args.frames} frames at {w}x{h} ({args.split}, seed "
          f"{args.seed}) to {out}: {mb:.1f} MB in {time.monotonic() - start:.1f} s")
    return 0


def _candidates(root: Path) -> list[Path]:
    """Folders that look like clips, broken or not (``mimo.data.layout.list_clips``)."""
    from mimo.data.layout import ClipError, list_clips

    try:
        return list_clips(root)
    except ClipError:
        return []


def _check(args) -> int:
    import numpy as np

    from mimo.data.layout import ClipError, read_clip

    root = Path(args.dir)
    if not root.is_dir():
        raise UsageError("DIR", f"{str(root)!r} is not a folder")
    folders = _candidates(root)
    if not folders:
        raise UsageError("DIR", f"{str(root)!r} holds no clip folders (each has meta.json and "
                                "frames.npy, codes.npy, scene.npy; or sdc.mp4 for a template)")
    broken, frames = 0, 0
    sizes, fps, characters = Counter(), Counter(), set()
    with_occlusion = occluded = references = 0
    for folder in folders:
        try:
            clip = read_clip(folder)
            for key, n in (("width", clip.frames.shape[2]), ("height", clip.frames.shape[1])):
                if clip.meta.get(key, n) != n:
                    raise ClipError(f"{folder / 'meta.json'}: {key} {clip.meta.get(key)} but "
                                    f"frames.npy is {n}")
        except ClipError as e:
            broken += 1
            print(f"broken: {e}")
            continue
        F, H, W = clip.frames.shape[:3]
        frames += F
        sizes[f"{W}x{H}"] += 1
        fps[f"{float(clip.meta.get('fps', 0)):g}"] += 1
        references += bool(clip.characters)
        if "character" in clip.meta:
            characters.add(str(clip.meta["character"]))
        if clip.occlusion is not None:
            with_occlusion += 1
            occluded += bool(np.any(clip.occlusion))
    fmt = lambda c: ", ".join(f"{k} ({v})" for k, v in sorted(c.items()))  # noqa: E731
    good = len(folders) - broken
    print(f"{root}: {good} clip(s) readable, {broken} broken; {frames} frames")
    if good:
        named = f"{len(characters)} named characters, " if characters else ""
        print(f"sizes: {fmt(sizes)}; fps: {fmt(fps)}")
        print(f"characters: {named}{references} clip(s) with reference images")
        print(f"occlusion: {with_occlusion} clip(s) with occlusion.npy, {occluded} with occluded pixels")
    return 1 if broken else 0


def run(args: argparse.Namespace) -> int:
    return {"synth": _synth, "check": _check}[args.action](args)
