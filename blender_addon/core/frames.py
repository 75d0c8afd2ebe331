"""Frame bookkeeping: scene frames <-> wire indices, output folders that never overwrite, names.

Scene frames ``frame_start, frame_start + step, ... <= frame_end`` become wire indices 0..F-1;
output PNG ``i`` of a job is shown at scene frame ``start + i`` by the image-sequence strip.
"""
from __future__ import annotations

import dataclasses
import os
import re

FRAME_NAME = "frame_{:05d}.png"


@dataclasses.dataclass(frozen=True)
class FrameRange:
    start: int
    end: int
    step: int = 1
    fps: float = 24.0  # scene fps (render.fps / render.fps_base) divided by step

    def __post_init__(self) -> None:
        if self.step < 1:
            raise ValueError(f"step: expected >= 1, got {self.step}")
        if self.end < self.start:
            raise ValueError(f"frame range: end {self.end} is before start {self.start}")
        if not self.fps > 0:
            raise ValueError(f"fps: expected > 0, got {self.fps}")

    @classmethod
    def from_scene_values(cls, frame_start: int, frame_end: int, frame_step: int, fps: int,
                          fps_base: float) -> FrameRange:
        return cls(int(frame_start), int(frame_end), int(frame_step), fps / fps_base / max(1, frame_step))

    @property
    def scene_frames(self) -> list[int]:
        return list(range(self.start, self.end + 1, self.step))

    def __len__(self) -> int:
        return (self.end - self.start) // self.step + 1

    def wire_index(self, scene_frame: int) -> int:
        off = scene_frame - self.start
        if off < 0 or off % self.step or scene_frame > self.end:
            raise ValueError(f"scene_frame: {scene_frame} is not a sampled frame of {self}")
        return off // self.step


def sanitize(name: str, default: str = "job") -> str:
    """A file-system-safe folder name: letters, digits, ``-``, ``_`` and ``.``; no leading dot."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    return s[:64] or default


def new_job_dir(root: str, name: str) -> str:
    """Create and return ``root/<sanitized name>`` or, when that exists, the first free
    ``root/<name>_001``, ``_002``, ...; an existing folder is never reused, so nothing a user
    (or a previous job) wrote is overwritten."""
    base = sanitize(name)
    os.makedirs(root, exist_ok=True)
    for i in range(0, 10000):
        path = os.path.join(root, base if i == 0 else f"{base}_{i:03d}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise ValueError(f"name: no free folder for {name!r} under {root}")


def frame_path(job_dir: str, index: int) -> str:
    """Path of frame ``index`` (0-based) inside a job folder."""
    if index < 0:
        raise ValueError(f"index: expected >= 0, got {index}")
    return os.path.join(job_dir, FRAME_NAME.format(index))
