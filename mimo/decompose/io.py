"""Streaming video in and out, so memory stays flat in the clip's length: frames are read in
chunks (twice if a stage needs all frames first) and written frame by frame."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


class VideoSource:
    """A video file read in chunks. ``width``/``height`` are cropped to even numbers (H.264
    outputs need them): the last column/row of an odd-sized video is dropped."""

    def __init__(self, path: str | Path, max_frames: int | None = None):
        import imageio_ffmpeg

        self.path = str(path)
        try:
            gen = imageio_ffmpeg.read_frames(self.path, pix_fmt="rgb24")
            meta = next(gen)
            gen.close()
        except (OSError, RuntimeError, StopIteration) as e:
            lines = [x.strip() for x in str(e).splitlines() if x.strip()]
            raise ValueError(f"ffmpeg cannot read {self.path!r} as a video: "
                             f"{lines[-1] if lines else type(e).__name__}") from None
        self.src_w, self.src_h = meta["size"]
        self.fps = float(meta.get("fps") or 30.0)
        self.width, self.height = self.src_w - self.src_w % 2, self.src_h - self.src_h % 2
        if min(self.width, self.height) < 16:
            raise ValueError(f"{self.path!r} is {self.src_w}x{self.src_h}; expected at least 16x16 pixels")
        n = sum(1 for _ in self._frames())
        if n == 0:
            raise ValueError(f"{self.path!r} has no frames")
        self.num_frames = min(n, max_frames) if max_frames else n

    def _frames(self) -> Iterator[np.ndarray]:
        import imageio_ffmpeg

        gen = imageio_ffmpeg.read_frames(self.path, pix_fmt="rgb24")
        next(gen)
        try:
            for buf in gen:
                yield np.frombuffer(buf, np.uint8).reshape(self.src_h, self.src_w, 3)[:self.height, :self.width]
        finally:
            gen.close()

    def chunks(self, size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """(first frame index, up to ``size`` frames) over the clip."""
        buf, start = [], 0
        for i, f in enumerate(self._frames()):
            if i >= self.num_frames:
                break
            buf.append(f)
            if len(buf) == size:
                yield start, buf
                start, buf = start + size, []
        if buf:
            yield start, buf


class ArraySource:
    """Frames already in memory (or a memory map), with the same interface as :class:`VideoSource`.

    Shapes: frames (F, H, W, 3) uint8
    """

    def __init__(self, frames: np.ndarray, fps: float):
        self.frames, self.fps = frames, float(fps)
        self.num_frames, self.height, self.width = frames.shape[:3]

    def chunks(self, size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        for s in range(0, self.num_frames, size):
            yield s, [np.asarray(f) for f in self.frames[s:s + size]]


class Mp4Writer:
    """H.264 mp4, frame by frame (the encoding of :func:`mimo.video.write_frames`)."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float):
        import imageio_ffmpeg

        from mimo.video import MP4_CRF

        self._gen = imageio_ffmpeg.write_frames(
            str(path), (width, height), fps=float(fps), codec="libx264", quality=None, macro_block_size=1,
            pix_fmt_out="yuv420p", output_params=["-crf", str(MP4_CRF)], ffmpeg_log_level="error")
        self._gen.send(None)

    def write(self, frame: np.ndarray) -> None:
        self._gen.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self._gen.close()


def open_npy(path: str | Path, shape: tuple, dtype) -> np.ndarray:
    """A ``.npy`` file opened for writing as a memory map (filled chunk by chunk)."""
    return np.lib.format.open_memmap(str(path), mode="w+", dtype=dtype, shape=shape)
