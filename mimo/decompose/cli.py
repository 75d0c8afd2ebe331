"""``mimo decompose VIDEO --out DIR``: a real video becomes motion for Blender, a template for
MIMO and a training clip (:mod:`mimo.decompose.pipeline`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mimo.cli_errors import CommandFailed, UsageError, check_device, int_range, positive_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mimo.decompose.models import DEFAULTS

    p.add_argument("video", help="the video to decompose (anything ffmpeg reads)")
    p.add_argument("--out", required=True, help="output folder (template/, clip/, motion.npz, contact_sheet.png)")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that already holds outputs")
    p.add_argument("--models", default=None, metavar="DIR",
                   help="folder of `mimo weights download DIR --decompose` (default: the Hugging Face cache)")
    for stage, what in (("detector", "person detector (RT-DETR, DETR)"), ("segmenter", "SAM segmenter"),
                        ("pose", "ViTPose keypoints"), ("depth", "depth model (Depth Anything, DPT)")):
        p.add_argument(f"--{stage}", default=None, metavar="ID_OR_DIR", help=f"{what}; default {DEFAULTS[stage]}")
    p.add_argument("--track", type=int_range(0, 999), default=0,
                   help="which person when there are several: 0 = the main one (largest, longest); "
                        "report.json lists the tracks")
    p.add_argument("--threshold", type=positive_float, default=0.5, help="detection score threshold")
    p.add_argument("--body", default="open", help="body model: open (default), smpl, smplh, smplx or a model file")
    p.add_argument("--fov", type=lambda s: positive_float(s, 179.0), default=60.0,
                   help="horizontal field of view of the video's camera in degrees (default 60)")
    p.add_argument("--focal", type=lambda s: positive_float(s, 1e6), default=None, help="focal length in pixels (overrides --fov)")
    p.add_argument("--moving-camera", action="store_true",
                   help="the camera moves: fill the scene by inpainting each frame (no temporal plate)")
    p.add_argument("--inpaint-model", default=None, metavar="ID_OR_DIR",
                   help="diffusers inpainting pipeline (e.g. a Stable Diffusion inpainting folder) for the "
                        "scene plate's pixels no frame shows; default: OpenCV inpainting. Fetch one with "
                        "`mimo weights download DIR --decompose --inpaint-model ID`")
    p.add_argument("--inpaint-steps", type=int_range(1, 1000), default=25,
                   help="sampler steps of --inpaint-model (default 25)")
    p.add_argument("--fit-steps", type=int_range(1, 100000), default=250,
                   help="optimisation steps of the body fit over the whole clip (default 250)")
    p.add_argument("--max-frames", type=int_range(1, 10**7), default=None)
    p.add_argument("--chunk", type=int_range(1, 1024), default=8, help="frames per model batch")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--seed", type=int_range(0, 2**31 - 1), default=0)


def run(args: argparse.Namespace) -> int:
    from mimo.cli_errors import argument, input_file

    video = input_file("video", args.video, "a video file")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError("--out", f"{str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UsageError("--out", f"{str(out)!r} is not empty (pass --overwrite to write into it)")
    device = check_device("--device", args.device)
    from mimo.body import load_body

    with argument("--body"):
        load_body(args.body)
    from mimo.decompose import models
    from mimo.decompose.inpaint import InpaintModelMissing
    from mimo.decompose.io import VideoSource
    from mimo.decompose.pipeline import ModelObserver, NoPerson, Options, TrackError, decompose

    if args.models is not None and not Path(args.models).is_dir():
        raise UsageError("--models", f"folder {args.models!r} not found (make it with `mimo weights download "
                                     f"{args.models} --decompose`)")
    specs = {s: models.resolve(s, getattr(args, s), args.models) for s in models.DEFAULTS}
    inpaint_model = None
    if args.inpaint_model is not None:
        from mimo.decompose import inpaint

        if args.moving_camera:
            raise UsageError("--inpaint-model", "fills the holes of the static camera's scene plate; with "
                                                "--moving-camera there is no plate (frames are filled by OpenCV)")
        inpaint_model = models.resolve("inpaint", args.inpaint_model, args.models)
        try:
            inpaint.check(inpaint_model)
        except inpaint.InpaintModelMissing as e:
            raise UsageError("--inpaint-model", str(e).split(": ", 1)[1]) from None
    try:
        for stage, spec in specs.items():
            models.check(stage, spec)
        with argument("video"):
            source = VideoSource(video, args.max_frames)
        observer = ModelObserver(specs, device=device, threshold=args.threshold)
    except models.ModelMissing as e:
        raise UsageError(models.FLAGS[e.stage], str(e).split(": ", 1)[1]) from None
    opt = Options(body=args.body, fov=args.fov, focal=args.focal, device=device, chunk=args.chunk,
                  track=args.track, static_camera=not args.moving_camera, seed=args.seed,
                  inpaint_model=inpaint_model, inpaint_steps=args.inpaint_steps, fit_steps=args.fit_steps)
    try:
        report = decompose(source, out, observer, opt)
    except TrackError as e:
        raise UsageError("--track", str(e)) from None
    except NoPerson as e:
        raise CommandFailed(str(e)) from None
    except InpaintModelMissing as e:  # the pipeline's folder did not load (checked before, loaded late)
        raise UsageError("--inpaint-model", str(e).split(": ", 1)[1]) from None
    print(json.dumps({k: report[k] for k in ("frames", "width", "height", "fps", "seconds_per_frame")}))
    print(f"wrote {out}/template (mimo generate --template), {out}/motion.npz (Blender: Import Motion, "
          f"Import Camera), {out}/clip (training), {out}/contact_sheet.png")
    return 0
