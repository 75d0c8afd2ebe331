"""``decompose``: a video becomes a fitted motion, a camera, the layers MIMO reads, and a
training clip. It reads top to bottom as its passes:

1. **detect** (models only): person boxes per frame, IoU tracks, the chosen track's box per frame;
2. **observe**: per chunk, the person's mask (cleaned), COCO-17 keypoints and depth, to disk
   (``layers/mask.npy``, ``layers/depth.npy``); sample frames for the background plate;
3. **fit**: the body over all frames at once (:func:`mimo.decompose.fit.fit_clip`); metric depth
   gives surface points, relative depth is only used for occlusion (after alignment);
4. **compose**: per chunk, the motion codes of the fitted body (our rasterizer), the scene
   (plate or inpainting; the plate's holes by OpenCV or a diffusers pipeline), the occlusion
   layer; written as the official template
   (``template/{vid,sdc,bk,occ}.mp4``, ``config.json``), the training clip (``clip/``), and
   ``motion.npz`` (clip + camera, what Blender's Import Motion reads); then a contact sheet.

Memory is flat in the clip's length: frames stream in chunks of ``chunk``; per-frame layers go
to ``.npy`` memory maps; only per-frame parameters and the plate samples stay in memory.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mimo.decompose import scene as sc
from mimo.decompose.io import Mp4Writer, open_npy


class NoPerson(RuntimeError):
    """The detector found nobody in the video."""


class TrackError(ValueError):
    """The track asked for does not exist."""


@dataclasses.dataclass
class Options:
    """Knobs of :func:`decompose` (the CLI flags of ``mimo decompose``)."""

    body: str = "open"
    fov: float = 60.0  # horizontal field of view (degrees), used unless focal is given
    focal: float | None = None  # pixels
    device: str = "cpu"
    chunk: int = 8
    track: int = 0  # which track (0 = the main person; tracks ordered by area × score × length)
    static_camera: bool = True
    grow: int = 4  # pixels the person mask grows by before the scene is filled
    min_area: int = 64  # pixels: smaller mask components (and holes) are dropped
    samples: int = 32  # frames sampled for the background plate
    depth_points: int = 256  # surface points per frame for the fit (metric depth)
    keypoint_px: float = 3.0  # expected keypoint noise (pixels)
    fit_steps: int = 250
    inpaint_model: str | None = None  # diffusers inpainting pipeline for the plate's holes (None: OpenCV)
    inpaint_steps: int = 25
    seed: int = 0


class ModelObserver:
    """Detection, segmentation, keypoints and depth with the four transformers models."""

    def __init__(self, specs: dict[str, str], device: str = "cpu", threshold: float = 0.5):
        from mimo.decompose import models, stages

        self.stages = stages
        self.loaded = {k: models.load(k, specs[k], device) for k in ("detector", "segmenter", "pose", "depth")}
        self.threshold = threshold
        self.depth_kind = stages.depth_kind(self.loaded["depth"])

    def detect(self, start: int, frames: list[np.ndarray]) -> list[np.ndarray]:
        return self.stages.detect(self.loaded["detector"], frames, self.threshold)

    def observe(self, start: int, frames: list[np.ndarray], boxes: np.ndarray, timings: dict):
        """Shapes: boxes (n, 5) -> masks (n, H, W) bool, keypoints (n, 17, 3), depth (n, H, W)"""
        t = time.perf_counter()
        masks = self.stages.segment(self.loaded["segmenter"], frames, boxes)
        timings["segment"] = timings.get("segment", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        kp = self.stages.keypoints(self.loaded["pose"], frames, boxes)
        timings["keypoints"] = timings.get("keypoints", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        depth = self.stages.depth(self.loaded["depth"], frames)
        timings["depth"] = timings.get("depth", 0.0) + time.perf_counter() - t
        return masks, kp, depth


def intrinsics(width: int, height: int, fov: float, focal: float | None) -> np.ndarray:
    """Square pixels, principal point at the centre (W/2, H/2); focal from the horizontal
    field of view unless given. Shapes: -> (3, 3)"""
    f = focal if focal is not None else 0.5 * width / np.tan(np.radians(fov) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def decompose(source, out: str | Path, observer, options: Options | None = None,
              progress: Callable[[str, int], object] | None = None) -> dict:
    """Decompose ``source`` (a :class:`mimo.decompose.io.VideoSource` or ``ArraySource``) into
    ``out`` (created). ``observer`` gives boxes and observations (:class:`ModelObserver`, or any
    object with ``detect``/``observe``/``depth_kind``; one with ``boxes`` (F, 5) skips detection).
    ``progress(stage, total)`` returns a :class:`mimo.progress.Progress`-like context.

    Returns a report: frames, size, fps, per-stage seconds, the fit's losses, chosen track.
    """
    from mimo.body import load_body
    from mimo.decompose import stages
    from mimo.decompose.fit import FitOptions, depth_points, fit_clip, to_motion
    from mimo.progress import Progress

    opt = options or Options()
    progress = progress or (lambda stage, total: Progress(stage, total, unit="step" if stage == "fit" else "frame"))
    out = Path(out)
    for sub in ("template", "clip", "layers"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    F, H, W, fps = source.num_frames, source.height, source.width, source.fps
    timings: dict[str, float] = {}
    report = {"frames": F, "width": W, "height": H, "fps": fps}

    # ---------------------------------------------------------------- 1. detect and track
    boxes = getattr(observer, "boxes", None)
    if boxes is None:
        t = time.perf_counter()
        detections = []
        with progress("detect", F) as bar:
            for start, frames in source.chunks(opt.chunk):
                detections += observer.detect(start, frames)
                bar.update(start + len(frames))
        tracks = stages.track(detections)
        timings["detect"] = time.perf_counter() - t
        if not tracks:
            raise NoPerson("no person detected in the video (try a lower --threshold)")
        if opt.track >= len(tracks):
            raise TrackError(f"track {opt.track} asked for, the video has {len(tracks)} track(s) "
                             f"(0..{len(tracks) - 1})")
        boxes = stages.track_boxes(tracks[opt.track], F)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, W)  # inside the frame, at least 4 pixels
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, H)
        boxes[:, 0] = np.minimum(boxes[:, 0], W - 4)
        boxes[:, 1] = np.minimum(boxes[:, 1], H - 4)
        boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0] + 4)
        boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1] + 4)
        report["tracks"] = [{"track": i, "first": t.frames[0], "last": t.frames[-1], "detections": len(t.frames),
                             "weight": round(t.weight, 1)} for i, t in enumerate(tracks)]
        report["track"] = opt.track

    # ---------------------------------------------------------------- 2. observe
    K = intrinsics(W, H, opt.fov, opt.focal)
    mask_file = open_npy(out / "layers" / "mask.npy", (F, H, W), np.uint8)
    depth_file = open_npy(out / "layers" / "depth.npy", (F, H, W), np.float16)
    keypoints = np.zeros((F, 17, 3))
    metric = observer.depth_kind == "metric"
    points = np.full((F, opt.depth_points, 3), np.nan) if metric else None
    plate = sc.PlateBuilder(opt.samples) if opt.static_camera else None
    sample_ids = plate.sample_ids(F) if plate else set()
    rng = np.random.default_rng(opt.seed)
    with progress("observe", F) as bar:
        for start, frames in source.chunks(opt.chunk):
            n = len(frames)
            masks, kp, depth = observer.observe(start, frames, boxes[start:start + n], timings)
            for i in range(n):
                m = sc.clean_mask(masks[i], opt.min_area)
                mask_file[start + i] = m * 255
                depth_file[start + i] = np.clip(depth[i], -6e4, 6e4)
                if points is not None:
                    points[start + i] = depth_points(depth[i], m, K, opt.depth_points, rng)
                if start + i in sample_ids:
                    plate.add(frames[i], sc.grow(m, opt.grow))
            keypoints[start:start + n] = kp
            bar.update(start + n)
    mask_file.flush()
    depth_file.flush()

    # ---------------------------------------------------------------- 3. fit
    t = time.perf_counter()
    body = load_body(opt.body, device=opt.device)
    with progress("fit", opt.fit_steps + 50) as bar:
        fit = fit_clip(body, keypoints, K, points, FitOptions(keypoint_px=opt.keypoint_px, steps=opt.fit_steps),
                       device=opt.device, progress=lambda k, total: bar.update(k), seed=opt.seed)
    clip, camera = to_motion(body, fit, fps, W, H)
    clip.save(out / "motion.npz", camera=camera)
    timings["fit"] = time.perf_counter() - t
    report["fit_losses"] = {k: round(v, 4) for k, v in fit.losses.items()}

    # ---------------------------------------------------------------- 4. compose
    t = time.perf_counter()
    plate_img = holes = None
    if plate is not None:
        inpainter = None
        if opt.inpaint_model is not None and plate.holes().any():  # loaded only when needed
            from mimo.decompose.inpaint import DiffusersInpainter

            inpainter = DiffusersInpainter(opt.inpaint_model, device=opt.device, seed=opt.seed,
                                           steps=opt.inpaint_steps)
        plate_img, holes = plate.plate(inpainter)
        del inpainter
        report["plate_inpainted_pixels"] = int(holes.sum())
        report["plate_inpainted_by"] = "opencv" if opt.inpaint_model is None else str(opt.inpaint_model)
    from mimo.codes import default_code_table, remove_hands, render_codes

    faces = torch.as_tensor(remove_hands(body.faces.cpu().numpy(), {k: v.cpu().numpy() for k, v in body.vertex_sets.items()}))
    colours = torch.as_tensor(default_code_table(body.rest_vertices.cpu().numpy()), dtype=torch.float32)
    writers = {name: Mp4Writer(out / "template" / f"{name}.mp4", W, H, fps) for name in ("vid", "sdc", "bk", "occ")}
    arrays = {"frames": open_npy(out / "clip" / "frames.npy", (F, H, W, 3), np.uint8),
              "codes": open_npy(out / "clip" / "codes.npy", (F, H, W, 3), np.uint8),
              "scene": open_npy(out / "clip" / "scene.npy", (F, H, W, 3), np.uint8),
              "occlusion": open_npy(out / "clip" / "occlusion.npy", (F, H, W), np.uint8)}
    sheet_ids = sorted(set(np.round(np.linspace(0, F - 1, min(4, F))).astype(int).tolist()))
    sheet = []
    try:
        with progress("compose", F) as bar:
            for start, frames in source.chunks(opt.chunk):
                n = len(frames)
                params = {k: torch.as_tensor(v, dtype=torch.float32, device=body.rest_vertices.device)
                          for k, v in clip.bodies[0].params(start, start + n).items()}
                with torch.no_grad():
                    verts = body(**params).vertices
                codes, bmask, bdepth = render_codes(verts, faces.to(verts.device), colours.to(verts.device),
                                                    camera.K[start:start + n], camera.R[start:start + n],
                                                    camera.t[start:start + n], W, H, return_mask=True,
                                                    return_depth=True)
                codes, bmask, bdepth = codes.cpu().numpy(), bmask.cpu().numpy(), bdepth.cpu().numpy()
                for i in range(n):
                    f = start + i
                    person = mask_file[f] > 0
                    d = depth_file[f].astype(np.float32)
                    scene_depth = d if metric else sc.align_depth(d, bdepth[i], person & bmask[i])
                    occ = sc.occlusion_layer(bmask[i], bdepth[i], person, scene_depth, min_area=opt.min_area)
                    bk = sc.scene_frame(frames[i], sc.grow(person, opt.grow), plate_img)
                    occ_rgb = np.repeat(occ[..., None], 3, -1)
                    for name, img in (("vid", frames[i]), ("sdc", codes[i]), ("bk", bk), ("occ", occ_rgb)):
                        writers[name].write(img)
                    arrays["frames"][f], arrays["codes"][f] = frames[i], codes[i]
                    arrays["scene"][f], arrays["occlusion"][f] = bk, occ
                    if f in sheet_ids:
                        sheet.append({"frame": frames[i], "keypoints": keypoints[f], "mask": person, "depth": d,
                                      "codes": codes[i], "scene": bk, "occlusion": occ})
                bar.update(start + n)
    finally:
        for w in writers.values():
            w.close()
    for a in arrays.values():
        a.flush()
    timings["compose"] = time.perf_counter() - t

    # ---------------------------------------------------------------- files around the layers
    from mimo.data.layout import FORMAT, VERSION
    from mimo.decompose.outputs import contact_sheet

    (out / "template" / "config.json").write_text(json.dumps({"fps": fps}, indent=1) + "\n")
    motion_bytes = (out / "motion.npz").read_bytes()
    (out / "clip" / "motion.npz").write_bytes(motion_bytes)
    meta = {"format": FORMAT, "version": VERSION, "fps": fps, "num_frames": F, "width": W, "height": H,
            "body_model": body.kind, "source": f"mimo decompose of {getattr(source, 'path', 'frames')}",
            "licence": "that of the source video", "characters": []}
    (out / "clip" / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    np.savez_compressed(out / "observations.npz", boxes=boxes, keypoints=keypoints, K=K,
                        depth_kind=np.asarray(observer.depth_kind))
    contact_sheet(sheet, out / "contact_sheet.png")
    report["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    report["seconds_per_frame"] = {k: round(v / F, 4) for k, v in timings.items()}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
