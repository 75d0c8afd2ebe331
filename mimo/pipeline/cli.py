"""``mimo generate``: a character image and motion codes in, a video out.

    mimo generate --weights weights/ --character me.png --codes sdc.mp4 --out out.mp4
    mimo generate --preview --motion clip.npz --camera cam.npz --out frames/
    mimo generate --weights weights/ --character me.png --template templates/dance --out out.mp4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mimo.cli_errors import (
    CommandFailed,
    UsageError,
    argument,
    check_device,
    input_file,
    int_range,
    output_path,
    positive_float,
    save_frames,
    size_type,
)
from mimo.codes.cli import add_motion_arguments, choose_camera, load_body_arg, load_motion

from .prepare import ROI_SIZE
from .presets import PRESETS, preset


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", metavar="DIR", help="MIMO weights folder (official layout)")
    src.add_argument("--preview", action="store_true",
                     help="weight-free preview: scene + code-coloured body + occlusion layer")
    p.add_argument("--character", metavar="IMG",
                   help="reference image of the character (RGBA: composited on white, cropped to the figure)")
    p.add_argument("--character-mask", metavar="IMG", help="figure mask for an RGB --character (white = figure)")
    motion = p.add_mutually_exclusive_group(required=True)
    motion.add_argument("--motion", metavar="CLIP.npz", help="motion clip; codes are rendered on the fly")
    motion.add_argument("--codes", metavar="VIDEO|DIR", help="structured motion code frames (e.g. sdc.mp4)")
    motion.add_argument("--template", metavar="DIR",
                        help="official template folder (vid.mp4, sdc.mp4, bk.mp4, [occ.mp4], config.json)")
    add_motion_arguments(p, official=False)  # --camera, --auto-camera, --body, --frames
    p.add_argument("--scene", metavar="VIDEO|DIR|IMG", help="background plate frames (default white)")
    p.add_argument("--occlusion", metavar="VIDEO|DIR",
                   help="occlusion masks (first channel = alpha of scene pixels in front of the body)")
    p.add_argument("--size", type=size_type, metavar="WxH",
                   help="output size (default: the codes' size; for --motion the camera's, else 784x784)")
    p.add_argument("--steps", type=int_range(1, 1000), default=None,
                   help="denoising steps (default: the mode's, see --mode)")
    p.add_argument("--cfg", type=_cfg, default=3.5)
    p.add_argument("--seed", type=int_range(0, 2**63 - 1), default=42)
    p.add_argument("--context", type=int_range(1, 32), default=None,
                   help="frames per context window (<= 32; default: the mode's, see --mode)")
    p.add_argument("--overlap", type=int_range(0, 31), default=None,
                   help="frames shared by neighbouring windows (fewer than the context; default: the mode's)")
    p.add_argument("--roi-size", type=_roi_size, default=None,
                   help=f"side of the generated ROI crops (default {ROI_SIZE}, or the output's longer "
                        "side rounded up to a multiple of 8 when that is smaller)")
    p.add_argument("--mode", choices=tuple(PRESETS), default="exact",
                   help="; ".join(f"{m.name}: {m.summary} (context {m.context}, overlap {m.overlap}, "
                                  f"{m.steps} steps)" for m in PRESETS.values())
                        + " (mimo/pipeline/presets.py; mimo/pipeline/fast.py lists how fast differs)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None,
                   help="default: fp16 on CUDA (bf16 for the modes other than exact), fp32 on CPU")
    p.add_argument("--low-memory", action="store_true",
                   help="for 8 GB cards: the networks used once per job leave the GPU between uses and "
                        "windows shrink to fit (slower; mimo/pipeline/memory.py)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the denoising UNet's blocks (CUDA): ~20%% faster UNet calls, after "
                        "about 1.5 minutes of compiling per new size (~20 s once cached on disk); auto: "
                        "on CUDA with triton, for jobs of at least 150 frames x 25 steps; on: the VAE "
                        "too (~40%% faster encode and decode, about 50 s more compiling)")
    p.add_argument("--fps", type=lambda t: positive_float(t, 240.0), default=None,
                   help="output fps (default: the input's, else 30)")
    p.add_argument("--raw", action="store_true",
                   help="inputs are already WxH: no ROI crop, no compositing; output the pipeline frames")
    p.add_argument("--out", required=True, metavar="OUT.mp4|DIR", help="mp4 file or folder of PNG frames")
    p.add_argument("--out-npy", metavar="FILE",
                   help="also save the float frames in [0,1] before quantisation: (F,H,W,3) with --raw "
                        "or --preview, else the generated ROI crops (L,S,S,3)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--gpus", type=int_range(1, 64), default=1, metavar="N",
                   help="split the job over N GPUs of this host, one process each (windows of every "
                        "step, VAE encodes and decodes; same frames as one GPU); also works under "
                        "torchrun. With --device cpu: N CPU processes (gloo)")


def _cfg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= v <= 50:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a number in [0, 50], got {text!r}")
    return v


def _roi_size(text: str) -> int:
    v = int_range(64, 2048)(text)
    if v % 8:
        raise argparse.ArgumentTypeError(f"expected a multiple of 8, got {text!r}")
    return v


def _render_motion(args, size: tuple[int, int] | None):
    """The ClipMotion of --motion (mimo.motion + mimo.body), the output size and the camera
    sentence, with the camera rule of ``mimo codes`` (:func:`mimo.codes.cli.choose_camera`)."""
    from .prepare import ClipMotion

    clip, stored = load_motion(args)
    body = load_body_arg(args.body, check_device("--device", args.device))
    camera, size, what = choose_camera(args, clip, stored, body, size)
    return ClipMotion(clip=clip, body=body, camera=camera), size, what


def _read(arg: str, path: str) -> np.ndarray:
    from mimo.video import read_frames

    with argument(arg):
        return read_frames(path)


def build_job(args):
    """Read every input named on the command line and build the job with the library's one job
    builder (:func:`mimo.pipeline.prepare.prepare_job`, the server's too); also returns a sentence
    on where the codes came from."""
    from mimo.errors import FieldError
    from mimo.video import video_fps

    from .prepare import CodeFrames, JobSettings, prepare_job

    if args.camera and not args.motion:
        raise UsageError("--camera", "goes with --motion")
    size = args.size
    if args.template:
        from .template import load_template

        if not Path(args.template).is_dir():
            raise UsageError("--template", f"expected a template folder, got {args.template!r}")
        with argument("--template"):
            motion = load_template(args.template)
        what = f"template {args.template}"
    elif args.codes:
        codes = _read("--codes", args.codes)
        with argument("--codes"):
            motion = CodeFrames(codes=codes, fps=video_fps(args.codes))
        what = f"codes from {args.codes}"
    else:
        motion, size, what = _render_motion(args, args.size)
    if args.frames is not None and not args.motion:  # --motion cut its clip before rendering
        motion = _cut(motion, args.frames)
    scene = occlusion = None
    if args.scene:
        scene = _read("--scene", args.scene)
    if args.occlusion:
        occlusion = _read("--occlusion", args.occlusion)[..., 0].copy()
        if scene is None:
            raise UsageError("--occlusion", "needs --scene (the pixels it puts in front of the body)")
    character = None
    if args.character:
        input_file("--character", args.character, "an image file (PNG, JPEG, ...)")
        if args.character_mask:
            input_file("--character-mask", args.character_mask, "an image file (white = figure)")
        character = args.character
    elif not args.preview:
        raise UsageError("--character", "an image of the character (IMG) is required with --weights")
    settings = JobSettings(mode=args.mode, steps=args.steps, cfg=args.cfg, seed=args.seed, context=args.context,
                           overlap=args.overlap, roi_size=args.roi_size, fps=args.fps, raw=args.raw, size=size)
    try:
        job = prepare_job(character, motion, settings, character_mask=args.character_mask, scene=scene,
                          occlusion=occlusion, device=args.device)
    except FieldError as e:  # what the command line cannot check alone (frame counts, sizes)
        motion_arg = "--template" if args.template else "--codes" if args.codes else "--motion"
        arg = {"motion": motion_arg, "codes": motion_arg}.get(e.field) or JOB_FIELD_ARGS.get(e.field.split("[")[0])
        raise UsageError(arg or "input", e.message if arg else str(e)) from e
    return job, what


def _cut(motion, frames: slice):
    """``motion`` (codes or a template) cut to ``frames``; a step divides the fps."""
    import dataclasses

    n = len(motion.codes)
    index = np.arange(n)[frames]
    if not len(index):
        raise UsageError("--frames", f"selects no frame of the {n} input frames")
    cut = lambda a: a[index] if a is not None and len(a) == n else a  # noqa: E731
    fps = motion.fps / (frames.step or 1) if motion.fps else None
    if hasattr(motion, "scene"):  # a template
        return dataclasses.replace(motion, codes=cut(motion.codes), scene=cut(motion.scene),
                                   occlusion=cut(motion.occlusion), source=cut(motion.source), fps=fps)
    return dataclasses.replace(motion, codes=cut(motion.codes), mask=cut(motion.mask), fps=fps)


#: job field (mimo.pipeline.prepare) -> the option that sets it
JOB_FIELD_ARGS = {"scene": "--scene", "occlusion": "--occlusion", "occlusion_source": "--template",
                  "roi_size": "--roi-size", "fps": "--fps", "character": "--character",
                  "character_mask": "--character-mask", "size": "--size", "mode": "--mode", "steps": "--steps",
                  "cfg": "--cfg", "seed": "--seed", "context": "--context", "overlap": "--overlap",
                  "raw": "--raw", "camera": "--camera", "bodies": "--motion", "code_mask": "--motion"}


#: ``--compile auto`` compiles only jobs of at least this many frames x steps. On an H200 compiled
#: blocks save about 0.15-0.2 s per frame at 25 steps, and compiling costs 70-100 s the first time
#: (about 20 s from inductor's disk cache), so a one-off short job is faster uncompiled. A server
#: amortizes the compile over every job and compiles whenever it can. The VAE is compiled only with
#: ``--compile on``: it saves about 23 ms per frame for about 50 s of compiling.
AUTO_COMPILE_FRAME_STEPS = 150 * 25


def load(args, frame_steps: int = 0):
    """The backend for ``args``; ``frame_steps`` (frames x steps of the job) decides --compile auto."""
    from mimo.pipeline.backends import COMPILE_CHOICES, load_backend
    from mimo.pipeline.pipeline import resolve_device_dtype

    if args.preview:
        return load_backend("preview")
    weights = Path(args.weights)
    if not weights.is_dir():
        raise UsageError("--weights", f"folder {str(weights)!r} not found; get the official weights with "
                                      f"`mimo weights download {weights}` (or `mimo weights make-tiny DIR` "
                                      "for a test run)")
    check_device("--device", args.device)
    if COMPILE_CHOICES[args.compile]:
        from mimo.models.compile import can_compile

        ok, why = can_compile(resolve_device_dtype(args.device, None)[0])
        if not ok:
            raise UsageError("--compile", f"--compile on cannot run here: {why}")
    try:
        dtype = args.dtype
        if dtype is None and preset(args.mode).schedule == "fast":
            dtype = "bf16" if resolve_device_dtype(args.device, None)[0].type == "cuda" else None
        compile = COMPILE_CHOICES[args.compile]
        if compile is None and frame_steps < AUTO_COMPILE_FRAME_STEPS:
            compile = False
        return load_backend("mimo", weights=str(weights), device=args.device, dtype=dtype,
                            compile=compile, compile_vae=compile is True, low_memory=args.low_memory)
    except ValueError as e:  # mimo.models.WeightsError lists every missing or misshaped file
        raise UsageError("--weights", f"{e} (get the official weights with `mimo weights download {weights}`)") from e


def run(args) -> int:
    from mimo.pipeline.job import JobEvents
    from mimo.progress import Progress

    # 1. Outputs first: a bad --out must not cost a whole generation, nor replace an input.
    for name in ("character", "motion", "codes", "template", "scene", "occlusion"):
        given = getattr(args, name, None)
        if given and Path(given).resolve() == Path(args.out).resolve():
            raise UsageError("--out", f"{args.out!r} is also the --{name} input; write elsewhere")
    out = output_path("--out", args.out, args.overwrite, size=args.size)
    if args.out_npy:
        output_path("--out-npy", args.out_npy, args.overwrite, suffixes=(".npy",))
    # 2. Inputs, then the output size they give.
    job, what = build_job(args)
    output_path("--out", args.out, args.overwrite, size=(job.width, job.height))
    from . import distributed  # --gpus N: one process per GPU (mimo/pipeline/distributed.py)

    if args.gpus > 1 and not distributed.under_launcher():
        return distributed.launch_cli(run, args)
    rank = distributed.join_cli(args)
    backend = load(args, job.num_frames * job.steps)
    distributed.attach(backend)
    roi = "" if args.preview or args.raw else f", ROI crops at {job.roi_size}x{job.roi_size}"
    mode = "" if args.preview else f", {job.mode} mode, {job.steps} steps"
    print(f"generating {job.num_frames} frames at {job.width}x{job.height}{roi}; {what}; "
          f"{backend.name} backend{mode}", file=sys.stderr)
    # 3. Generate.
    frames = np.empty((job.num_frames, job.height, job.width, 3), np.uint8)
    raw = {}
    bar: list[Progress] = []

    def progress(stage, step, total):
        if not bar or bar[-1].desc != stage:
            if bar:  # the backend moved on: the previous stage is complete
                bar[-1].update(bar[-1].total)
                bar[-1].close()
            bar.append(Progress(stage, total, unit="step" if stage == "denoise" else "frame", quiet=args.quiet))
        bar[-1].update(step)

    def frame(index, image):
        frames[index] = image

    events = JobEvents(progress=progress, frame=frame, raw_frames=lambda f: raw.__setitem__("f", f))
    try:
        stats = backend.generate(job, events)
    except ValueError as e:
        raise CommandFailed(f"generation failed: {e}") from e
    finally:
        if bar:
            bar[-1].close()
    if rank:  # rank 0 writes
        return 0
    # 4. Write; if that still fails, keep the frames.
    save_frames("--out", out, frames, job.fps, args.overwrite)
    if args.out_npy:
        floats = raw.get("f", frames.astype(np.float32) / 255.0)
        try:  # a missing folder is made, as for --out
            Path(args.out_npy).parent.mkdir(parents=True, exist_ok=True)
            np.save(args.out_npy, np.asarray(floats, dtype=np.float32))
        except OSError as e:
            raise CommandFailed(f"--out-npy: writing {args.out_npy!r} failed ({e.strerror or e}); the frames "
                                f"are in {str(out)!r}") from e
    secs = stats.get("seconds", {})
    total = secs.get("total", sum(secs.values()))
    print(f"wrote {job.num_frames} frames to {out} ({stats.get('backend')}, "
          f"{stats.get('device', 'cpu')}, {total:.1f} s)", file=sys.stderr)
    return 0
