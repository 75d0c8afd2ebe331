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
from PIL import Image


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 784x784, got {text!r}") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"expected a size of at least 8x8, got {text!r}")
    return w, h


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
    p.add_argument("--camera", metavar="CAM.npz",
                   help="camera track for --motion (default: the clip file's, else a front camera framing the motion)")
    p.add_argument("--body", default="open", help="body model for --motion: open (default) or a SMPL-family file")
    p.add_argument("--scene", metavar="VIDEO|DIR|IMG", help="background plate frames (default white)")
    p.add_argument("--occlusion", metavar="VIDEO|DIR",
                   help="occlusion masks (first channel = alpha of scene pixels in front of the body)")
    p.add_argument("--size", type=_size, metavar="WxH",
                   help="output size (default: the codes' size; 784x784 for --motion)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfg", type=float, default=3.5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--context", type=int, default=None,
                   help="frames per context window (<= 32; default 24 in exact mode, 32 in fast mode)")
    p.add_argument("--overlap", type=int, default=4, help="frames shared by neighbouring windows")
    p.add_argument("--roi-size", type=int, default=784, help="side of the generated ROI crops")
    p.add_argument("--mode", choices=("exact", "fast"), default="exact",
                   help="exact: the official schedule; fast: same networks, non-wrapping (32-frame) "
                        "windows, batched windows, bf16 (mimo/pipeline/fast.py lists every difference)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None,
                   help="default: fp16 on CUDA (bf16 with --mode fast), fp32 on CPU")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the denoising UNet's blocks (CUDA): ~20%% faster UNet calls, after "
                        "about 1.5 minutes of compiling per new size (~20 s once cached on disk); auto: "
                        "on CUDA with triton, for jobs of at least 150 frames x 25 steps; on: the VAE "
                        "too (~40%% faster encode and decode, about 50 s more compiling)")
    p.add_argument("--fps", type=float, default=None, help="output fps (default: the input's, else 30)")
    p.add_argument("--raw", action="store_true",
                   help="inputs are already WxH: no ROI crop, no compositing; output the pipeline frames")
    p.add_argument("--out", required=True, metavar="OUT.mp4|DIR", help="mp4 file or folder of PNG frames")
    p.add_argument("--out-npy", metavar="FILE",
                   help="also save the float frames in [0,1] before quantisation: (F,H,W,3) with --raw "
                        "or --preview, else the generated ROI crops (L,S,S,3)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _resize_all(frames: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    w, h = size
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), resample)) for f in frames])


def _match_frames(name: str, frames: np.ndarray, count: int) -> np.ndarray:
    if len(frames) == 1 and count > 1:
        return np.repeat(frames, count, axis=0)
    if len(frames) != count:
        raise ValueError(f"{name}: expected {count} frames (one per motion-code frame) or one image, "
                         f"got {len(frames)}")
    return frames


def _render_motion(args, size: tuple[int, int]):
    """Codes, body mask and fps for --motion through mimo.motion + mimo.body + mimo.codes.

    Camera: --camera, else the one stored in the clip file, else a fixed front camera that frames
    the whole motion (``auto_camera_track``).
    """
    import torch

    from mimo.body import load_body
    from mimo.codes.clip import auto_camera_track, render_clip
    from mimo.motion import CameraTrack, load_npz

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    clip, camera = load_npz(args.motion)
    if clip is None:
        raise ValueError(f"motion: {args.motion} holds no motion clip")
    body = load_body(args.body, device=device)
    if args.camera:
        camera = CameraTrack.load(args.camera)
    elif camera is None:
        camera = auto_camera_track(clip, body, size[0], size[1])
    codes, mask = render_clip(clip, camera, body, size=size)
    return codes, mask, clip.fps


def _read_character(path: str, mask: str | None) -> np.ndarray:
    """RGB of the character; with an alpha channel (or ``mask``), composited on white and cropped
    to the figure as the official scripts do after matting (spec §8.3)."""
    from mimo.pipeline.roi import crop_character

    if not Path(path).is_file():
        raise ValueError(f"character: image {path!r} not found")
    with Image.open(path) as im:
        im.load()
        has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        rgba = np.asarray(im.convert("RGBA"))
    alpha = rgba[..., 3] if has_alpha else None
    if mask is not None:
        if not Path(mask).is_file():
            raise ValueError(f"character_mask: image {mask!r} not found")
        with Image.open(mask) as m:
            alpha = np.asarray(m.convert("L"))
        if alpha.shape != rgba.shape[:2]:
            raise ValueError(f"character_mask: expected {rgba.shape[1]}x{rgba.shape[0]} like the "
                             f"character, got {alpha.shape[1]}x{alpha.shape[0]}")
    return crop_character(np.ascontiguousarray(rgba[..., :3]), alpha)


def build_job(args):
    """Read every input named on the command line into a GenerationJob (+ fps)."""
    from mimo.pipeline.job import GenerationJob
    from mimo.video import read_frames, video_fps

    scene = occlusion = source = code_mask = None
    fps = None
    if args.template:
        from mimo.pipeline.template import load_template

        tpl = load_template(args.template)
        codes, scene, occlusion, source, fps = tpl.codes, tpl.scene, tpl.occlusion, tpl.source, tpl.fps
    elif args.codes:
        codes = read_frames(args.codes)
        fps = video_fps(args.codes)
    else:
        codes, code_mask, fps = _render_motion(args, args.size or (784, 784))
    if args.camera and not args.motion:
        raise ValueError("camera: --camera goes with --motion")
    size = args.size or (codes.shape[2], codes.shape[1])
    codes = _resize_all(codes, size, Image.NEAREST)  # codes keep their exact colours
    F = len(codes)
    if args.scene:
        scene = _match_frames("scene", _resize_all(read_frames(args.scene), size, Image.LANCZOS), F)
    elif scene is not None:
        scene = _resize_all(scene, size, Image.LANCZOS)
    if args.occlusion:
        occlusion = _match_frames("occlusion", read_frames(args.occlusion), F)[..., 0].copy()
    if occlusion is not None:
        occlusion = _resize_all(np.repeat(occlusion[..., None], 3, -1), size, Image.BILINEAR)[..., 0].copy()
        if scene is None:
            raise ValueError("occlusion: needs --scene (the pixels it puts in front of the body)")
    if source is not None:
        source = _resize_all(source, size, Image.LANCZOS)
    if args.character:
        character = _read_character(args.character, args.character_mask)
    elif args.preview:
        character = np.full((64, 64, 3), 255, np.uint8)
    else:
        raise ValueError("character: --character IMG is required with --weights")
    if args.raw and (size[0] % 8 or size[1] % 8):
        raise ValueError(f"size: --raw generates at {size[0]}x{size[1]}, which must be a multiple of 8")
    if args.context is not None and not 1 <= args.context <= 32:
        raise ValueError(f"context: windows longer than 32 frames are not supported by the motion "
                         f"modules (32 positions), got {args.context}")
    job = GenerationJob(character=character, codes=codes, code_mask=code_mask, scene=scene, occlusion=occlusion,
                        occlusion_source=source, steps=args.steps, cfg=args.cfg, seed=args.seed,
                        context=args.context, overlap=args.overlap, mode=args.mode, raw=args.raw,
                        roi_size=args.roi_size, fps=float(args.fps or fps or 30.0))
    job.validate()
    return job


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
        raise ValueError(f"weights: folder {str(weights)!r} not found; get the official weights with "
                         f"`mimo weights download {weights}` (or `mimo weights make-tiny DIR` for a test run)")
    if COMPILE_CHOICES[args.compile]:
        from mimo.models.compile import can_compile

        ok, why = can_compile(resolve_device_dtype(args.device, None)[0])
        if not ok:
            raise ValueError(f"compile: --compile on cannot run here: {why}")
    try:
        dtype = args.dtype
        if dtype is None and args.mode == "fast":
            dtype = "bf16" if resolve_device_dtype(args.device, None)[0].type == "cuda" else None
        compile = COMPILE_CHOICES[args.compile]
        if compile is None and frame_steps < AUTO_COMPILE_FRAME_STEPS:
            compile = False
        return load_backend("mimo", weights=str(weights), device=args.device, dtype=dtype,
                            compile=compile, compile_vae=compile is True)
    except ValueError as e:  # mimo.models.WeightsError lists every missing or misshaped file
        raise ValueError(f"{e}\n(get the official weights with `mimo weights download {weights}`)") from e


def run(args) -> int:
    from tqdm import tqdm

    from mimo.pipeline.job import JobEvents
    from mimo.video import write_frames

    try:
        job = build_job(args)
        out = Path(args.out)
        if out.suffix.lower() == ".mp4" and out.exists() and not args.overwrite:
            raise ValueError(f"out: {str(out)!r} exists (pass --overwrite to replace it)")
        backend = load(args, job.num_frames * job.steps)
    except (ValueError, OSError) as e:  # bad arguments, missing or unreadable input files
        print(f"mimo generate: error: {e}", file=sys.stderr)
        return 2
    frames = np.empty((job.num_frames, job.height, job.width, 3), np.uint8)
    raw = {}
    bars: dict[str, tqdm] = {}

    def progress(stage, step, total):
        if args.quiet:
            return
        bar = bars.get(stage)
        if bar is None:
            for b in bars.values():
                b.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="step" if stage == "denoise" else "frame",
                                     leave=False, file=sys.stderr)
        bar.n = step
        bar.refresh()

    def frame(index, image):
        frames[index] = image

    events = JobEvents(progress=progress, frame=frame, raw_frames=lambda f: raw.__setitem__("f", f))
    try:
        stats = backend.generate(job, events)
    except ValueError as e:
        print(f"mimo generate: error: {e}", file=sys.stderr)
        return 2
    finally:
        for b in bars.values():
            b.close()
    write_frames(out, frames, fps=job.fps, overwrite=args.overwrite)
    if args.out_npy:
        floats = raw.get("f", frames.astype(np.float32) / 255.0)
        np.save(args.out_npy, np.asarray(floats, dtype=np.float32))
    secs = stats.get("seconds", {})
    total = secs.get("total", sum(secs.values()))
    print(f"wrote {job.num_frames} frames to {out} ({stats.get('backend')}, "
          f"{stats.get('device', 'cpu')}, {total:.1f} s)", file=sys.stderr)
    return 0
