"""The model stages on a chunk of frames: person boxes, tracking, masks, 2-D keypoints, depth.

Every function takes frames as a list of (H, W, 3) uint8 RGB arrays and a
:class:`mimo.decompose.models.Loaded` model; boxes are pixels ``[x0, y0, x1, y1]`` (edges, origin
top-left). Keypoints come back in our pixel convention (pixel centres at +0.5,
docs/CONVENTIONS.md); the models' processors put centres on integers, hence the +0.5.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch


def _person_labels(model) -> list[int] | None:
    labels = [int(i) for i, n in model.config.id2label.items() if str(n).lower() == "person"]
    return labels or None


@torch.no_grad()
def detect(m, frames: list[np.ndarray], threshold: float = 0.3) -> list[np.ndarray]:
    """Person boxes per frame (all classes when the model has no "person" label).

    Shapes: -> list of (n_f, 5) float arrays [x0, y0, x1, y1, score]
    """
    inputs = m.processor(images=frames, return_tensors="pt").to(m.device)
    out = m.model(**inputs)
    sizes = [f.shape[:2] for f in frames]
    results = m.processor.post_process_object_detection(out, threshold=threshold, target_sizes=sizes)
    keep = _person_labels(m.model)
    boxes = []
    for r in results:
        sel = torch.ones_like(r["scores"], dtype=torch.bool) if keep is None else \
            torch.isin(r["labels"], torch.as_tensor(keep, device=r["labels"].device))
        b = torch.cat([r["boxes"][sel], r["scores"][sel, None]], 1).float().cpu().numpy()
        boxes.append(b.reshape(-1, 5))
    return boxes


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box pair. Shapes: (n, 4+), (m, 4+) -> (n, m)"""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda c: (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


@dataclasses.dataclass
class Track:
    """One person over time: the frames where a detection joined it, and those boxes."""

    id: int
    frames: list[int]
    boxes: list[np.ndarray]

    @property
    def weight(self) -> float:
        """Σ area × score: the main person is large, confident and present long."""
        b = np.asarray(self.boxes)
        return float(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) * b[:, 4]).sum())


def track(detections: list[np.ndarray], min_iou: float = 0.3, max_gap: int = 15) -> list[Track]:
    """Greedy IoU tracking: each frame's boxes join the live track they overlap most (best pairs
    first, IoU >= ``min_iou``); others start tracks; a track unseen for ``max_gap`` frames ends.
    Tracks are returned by decreasing :attr:`Track.weight` (ids in order of appearance)."""
    tracks: list[Track] = []
    for f, det in enumerate(detections):
        live = [t for t in tracks if f - t.frames[-1] <= max_gap]
        used = set()
        if live and len(det):
            m = iou(np.stack([t.boxes[-1] for t in live]), det)
            for k in np.argsort(-m, axis=None):
                i, j = divmod(int(k), m.shape[1])
                if m[i, j] < min_iou:
                    break
                if live[i].frames[-1] == f or j in used:
                    continue
                live[i].frames.append(f)
                live[i].boxes.append(det[j])
                used.add(j)
        for j in range(len(det)):
            if j not in used:
                tracks.append(Track(len(tracks), [f], [det[j]]))
    return sorted(tracks, key=lambda t: -t.weight)


def track_boxes(t: Track, num_frames: int) -> np.ndarray:
    """The track's box in every frame: linear between detections, held before and after.

    Shapes: -> (F, 5) [x0, y0, x1, y1, score]; score 0 where the box is interpolated
    """
    b = np.asarray(t.boxes, np.float64)
    fr = np.asarray(t.frames)
    out = np.zeros((num_frames, 5))
    for k in range(4):
        out[:, k] = np.interp(np.arange(num_frames), fr, b[:, k])
    out[fr, 4] = b[:, 4]
    return out


@torch.no_grad()
def segment(m, frames: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """The person's mask in each frame from a SAM box prompt.

    Shapes: boxes (n, 4+) -> (n, H, W) bool
    """
    inputs = m.processor(images=frames, input_boxes=[[list(map(float, b[:4]))] for b in boxes],
                         return_tensors="pt").to(m.device)
    out = m.model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"],
                  multimask_output=False)
    masks = m.processor.image_processor.post_process_masks(
        out.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu())
    return np.stack([mk[0, 0].numpy().astype(bool) for mk in masks])


@torch.no_grad()
def keypoints(m, frames: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints of the person in each frame's box (ViTPose; a whole-body model's first
    17 points are these).

    Shapes: boxes (n, 4+) -> (n, 17, 3) [u, v, score], pixel centres at +0.5
    """
    coco = [[[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]] for b in boxes]
    inputs = m.processor(frames, boxes=coco, return_tensors="pt").to(m.device)
    extra = {}
    if getattr(m.model.config.backbone_config, "num_experts", 1) > 1:  # ViTPose+: COCO expert
        extra["dataset_index"] = torch.zeros(len(frames), dtype=torch.long, device=m.device)
    out = m.model(**inputs, **extra)
    res = m.processor.post_process_pose_estimation(out, boxes=coco)
    kp = np.zeros((len(frames), 17, 3), np.float32)
    for i, r in enumerate(res):
        pts = r[0]["keypoints"].float().cpu().numpy()[:17]
        sc = r[0]["scores"].float().cpu().numpy()[:17]
        kp[i, :len(pts), :2] = pts + 0.5
        kp[i, :len(sc), 2] = np.clip(sc, 0.0, 1.0)
    return kp


def depth_kind(m) -> str:
    """"metric" (metres) or "relative" (affine-invariant inverse depth: larger is nearer)."""
    return "metric" if getattr(m.model.config, "depth_estimation_type", "relative") == "metric" else "relative"


@torch.no_grad()
def depth(m, frames: list[np.ndarray]) -> np.ndarray:
    """Per-pixel depth (metric models) or relative inverse depth, at the frames' size.

    Shapes: -> (n, H, W) float32
    """
    inputs = m.processor(images=frames, return_tensors="pt").to(m.device)
    out = m.model(**inputs)
    res = m.processor.post_process_depth_estimation(out, target_sizes=[f.shape[:2] for f in frames])
    return np.stack([r["predicted_depth"].float().cpu().numpy() for r in res])
