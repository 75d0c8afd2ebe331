"""Official template folders (docs/MIMO.md §8.2): ``vid.mp4``, ``sdc.mp4``, ``bk.mp4``, optional ``occ.mp4``
and ``config.json``, read the way the official editing script (run_edit.py) reads them.

* every video is resampled to the template fps (``config.json`` ``fps``, else the ``sdc.mp4``
  container's rate): frame indices ``arange(0, n, round(src_fps) / fps)`` truncated to integers;
* ``time_crop`` (``start_idx``, ``end_idx``, given at 30 fps) is rescaled by fps / 30;
* at most ``max_frames`` frames (150, the official ``MAX_FRAME_NUM``);
* ``sdc.mp4`` → motion codes; ``bk.mp4`` → scene; ``occ.mp4`` first channel → occlusion alpha;
  ``vid.mp4`` → the pixels the occlusion puts back in front.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from mimo.video import read_frames, video_fps

MAX_FRAME_NUM = 150


@dataclasses.dataclass
class Template:
    """Shapes: codes, scene, source (F, H, W, 3) uint8; occlusion (F, H, W) uint8 or None."""

    codes: np.ndarray
    scene: np.ndarray
    source: np.ndarray
    occlusion: np.ndarray | None
    fps: float


def resample_indices(num_frames: int, src_fps: float, fps: float) -> np.ndarray:
    """Indices of the frames kept when a ``src_fps`` video is read at ``fps`` (run_edit's rule)."""
    return np.arange(0, num_frames, round(src_fps) / fps).astype(int)


def load_template(folder: str | Path, max_frames: int = MAX_FRAME_NUM) -> Template:
    """Read a template folder (see module doc). Raises ValueError naming the file that is wrong.

    Shapes:
        returns Template with F <= max_frames frames
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"template: expected a folder, got {str(folder)!r}")
    for name in ("vid.mp4", "sdc.mp4", "bk.mp4"):
        if not (folder / name).is_file():
            raise ValueError(f"template: {str(folder)!r} lacks {name} (needs vid.mp4, sdc.mp4, bk.mp4)")
    cfg = {}
    if (folder / "config.json").is_file():
        with open(folder / "config.json") as f:
            cfg = json.load(f)
    fps = float(cfg.get("fps") or video_fps(folder / "sdc.mp4") or 30.0)
    start, end = 0, None
    crop = cfg.get("time_crop")
    if crop:
        start = int(int(crop.get("start_idx", 0)) * fps / 30)
        end = int(int(crop["end_idx"]) * fps / 30) if crop.get("end_idx") is not None else None

    def read(name: str) -> np.ndarray:
        path = folder / name
        frames = read_frames(path)
        idx = resample_indices(len(frames), video_fps(path) or 30.0, fps)
        return frames[idx][start:end][:max_frames]

    codes, scene, source = read("sdc.mp4"), read("bk.mp4"), read("vid.mp4")
    occ = read("occ.mp4")[..., 0].copy() if (folder / "occ.mp4").is_file() else None
    for name, arr in (("bk.mp4", scene), ("vid.mp4", source), ("occ.mp4", occ)):
        if arr is None:
            continue
        if arr.shape[:3] != codes.shape[:3]:
            raise ValueError(f"template: {name} has {arr.shape[0]} frames of {arr.shape[2]}x{arr.shape[1]}, "
                             f"sdc.mp4 has {codes.shape[0]} of {codes.shape[2]}x{codes.shape[1]}")
    if len(codes) == 0:
        raise ValueError(f"template: time_crop {crop} leaves no frames")
    return Template(codes=codes, scene=scene, source=source, occlusion=occ, fps=fps)
