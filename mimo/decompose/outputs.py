"""The contact sheet: a few frames of every layer side by side, for checking by eye."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mimo.decompose.skeleton import COCO_EDGES

COLUMNS = ("video + keypoints", "mask", "depth", "motion codes", "scene", "occlusion")


def _depth_image(d: np.ndarray) -> np.ndarray:
    ok = np.isfinite(d)
    if not ok.any():
        return np.zeros(d.shape + (3,), np.uint8)
    lo, hi = np.percentile(d[ok], [2, 98])
    g = np.clip((np.where(ok, d, hi) - lo) / max(hi - lo, 1e-6), 0, 1)
    return (np.repeat(g[..., None], 3, -1) * 255).astype(np.uint8)


def _keypoint_image(frame: np.ndarray, kp: np.ndarray, min_score: float = 0.2) -> Image.Image:
    im = Image.fromarray(frame).copy()
    draw = ImageDraw.Draw(im)
    r = max(1.5, frame.shape[1] / 160)
    for a, b in COCO_EDGES:
        if kp[a, 2] >= min_score and kp[b, 2] >= min_score:
            draw.line([tuple(kp[a, :2]), tuple(kp[b, :2])], fill=(255, 230, 0), width=max(1, int(r)))
    for u, v, s in kp:
        if s >= min_score:
            draw.ellipse([u - r, v - r, u + r, v + r], fill=(255, 40, 40))
    return im


def contact_sheet(rows: list[dict], path: str | Path, thumb_width: int = 200) -> Path:
    """One row per sampled frame: the frame with its keypoints, the mask over the frame, the
    depth (near = dark for metric depth; relative inverse depth is shown as given), the
    motion codes, the scene, the occlusion alpha. ``rows``: dicts with ``frame``, ``keypoints``
    (17, 3), ``mask`` (H, W) bool, ``depth`` (H, W), ``codes``, ``scene`` (H, W, 3),
    ``occlusion`` (H, W) uint8."""
    if not rows:
        raise ValueError("rows: expected at least one frame for the contact sheet")
    H, W = rows[0]["frame"].shape[:2]
    tw = thumb_width
    th = max(1, round(H * tw / W))
    top = 18
    sheet = Image.new("RGB", (tw * len(COLUMNS), top + th * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(COLUMNS):
        draw.text((c * tw + 4, 3), title, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        frame = row["frame"]
        masked = (frame * 0.35 + np.array([0, 160, 255]) * 0.65 * row["mask"][..., None]
                  + frame * 0.65 * (1 - row["mask"][..., None])).clip(0, 255).astype(np.uint8)
        tiles = [_keypoint_image(frame, row["keypoints"]), Image.fromarray(masked),
                 Image.fromarray(_depth_image(row["depth"])), Image.fromarray(row["codes"]),
                 Image.fromarray(row["scene"]), Image.fromarray(np.repeat(row["occlusion"][..., None], 3, -1))]
        for c, tile in enumerate(tiles):
            sheet.paste(tile.resize((tw, th), Image.BILINEAR), (c * tw, top + r * th))
    path = Path(path)
    sheet.save(path)
    return path
