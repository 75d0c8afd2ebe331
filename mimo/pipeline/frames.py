"""Frame preparation for :class:`~mimo.pipeline.pipeline.MimoPipeline`: resizes, uint8 frames to
tensors (whole or in chunks), runs of identical frames, and padding a short chunk to full size."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def resize_lanczos(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """PIL Lanczos resize (what the official image processors do); identity at the same size.

    Shapes:
        frame (h, w, 3) uint8 -> (height, width, 3) uint8
    """
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.LANCZOS))


def frames_to_tensor(frames, width: int, height: int, normalize: bool) -> torch.Tensor:
    """List/array of uint8 frames -> (F, 3, H, W) float32, in [-1, 1] or [0, 1]."""
    arr = np.stack([resize_lanczos(f, width, height) for f in frames]).astype(np.float32) / 255.0
    t = torch.from_numpy(arr).permute(0, 3, 1, 2)
    return t * 2.0 - 1.0 if normalize else t


def frame_chunks(frames, width: int, height: int, normalize: bool, chunk: int):
    """Like :func:`frames_to_tensor`, ``chunk`` frames at a time (host memory stays bounded)."""
    for i in range(0, len(frames), chunk):
        yield frames_to_tensor(frames[i:i + chunk], width, height, normalize)


def repeat_runs(frames) -> list[int]:
    """Lengths of the runs of consecutive identical frames (a static camera's scene, or the white
    scene of a job without one): the pipeline encodes one frame per run.

    Shapes:
        frames: F arrays (H_i, W_i, 3) -> run lengths summing to F
    """
    runs: list[int] = []
    for i, f in enumerate(frames):
        prev = frames[i - 1] if i else None
        if prev is not None and (f is prev or (f.shape == prev.shape and np.array_equal(f, prev))):
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x (n, ...) with n <= rows, padded to ``rows`` rows with copies of its last row."""
    return x if x.shape[0] == rows else torch.cat([x, x[-1:].expand(rows - x.shape[0], *x.shape[1:])])
