"""Reading and writing frame sequences: videos (through imageio-ffmpeg), folders of frames, images.

Every function here speaks uint8 RGB, top row first (see the shape glossary in :mod:`mimo`).

Shapes:
    frames  (F, H, W, 3) uint8
    image   (H, W, 3) uint8
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif", ".mpg", ".mpeg", ".wmv")
#: zero-padding of frame file names: frame_00000.png (the add-on's core/frames.py uses the same)
FRAME_DIGITS = 5
# x264 constant-rate factor for our mp4s: visually lossless, small files.
MP4_CRF = 17


def _natural_key(name: str) -> list:
    """Sort key that orders 'f2.png' before 'f10.png'."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image as RGB; an alpha channel is composited onto white (as the official scripts do).

    Shapes:
        returns (H, W, 3) uint8
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: expected an image file, got {str(path)!r} (not found)")
    with Image.open(path) as im:
        im.load()
        return _to_rgb_on_white(im)


def _to_rgb_on_white(im: Image.Image) -> np.ndarray:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        out = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder in natural order (frame2 before frame10)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: _natural_key(p.name))


def video_fps(path: str | os.PathLike) -> float | None:
    """The frame rate a video container declares (None for a folder, an image or an unknown rate)."""
    path = Path(path)
    if not (path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES):
        return None
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(gen)
    finally:
        gen.close()
    fps = float(meta.get("fps") or 0.0)
    return fps if fps > 0 else None


def read_frames(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """Read a video (anything ffmpeg decodes), a folder of image frames (natural sort), or one image.

    ``max_frames`` stops reading after that many frames. Images with alpha are composited on white.

    Shapes:
        returns (F, H, W, 3) uint8 (F = 1 for a single image)
    """
    path = Path(path)
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames: expected a positive integer or None, got {max_frames!r}")
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise ValueError(f"path: folder {str(path)!r} holds no image frames ({', '.join(IMAGE_SUFFIXES)})")
        files = files[:max_frames] if max_frames else files
        frames = [read_image(f) for f in files]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"path: frames in {str(path)!r} differ in size: {sorted(shapes)}")
        return np.stack(frames)
    if not path.is_file():
        raise ValueError(f"path: expected a video, an image or a folder of frames, got {str(path)!r} (not found)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path)[None]
    return _read_video(path, max_frames)


def _read_video(path: Path, max_frames: int | None) -> np.ndarray:
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
    except (OSError, RuntimeError, StopIteration) as e:
        raise ValueError(f"path: ffmpeg cannot read {str(path)!r} as a video: {_ffmpeg_reason(e)}") from e
    w, h = meta["size"]
    frames = []
    try:
        for buf in gen:
            frames.append(np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3))
            if max_frames and len(frames) >= max_frames:
                break
    finally:
        gen.close()
    if not frames:
        raise ValueError(f"path: video {str(path)!r} has no frames")
    return np.stack(frames)


def _ffmpeg_reason(error: BaseException) -> str:
    """The last line of what ffmpeg said (imageio-ffmpeg's message carries its whole banner)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def write_frames(
    out: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 30.0,
    overwrite: bool = False,
    prefix: str = "frame_",
) -> list[Path]:
    """Write frames as an H.264 mp4 (``out`` ends with .mp4) or as zero-padded PNGs in folder ``out``.

    PNG names are ``<prefix><index>.png`` with at least 5 digits (``frame_00000.png``, as the
    Blender add-on names the frames it receives), index from 0. Existing files are
    never replaced unless ``overwrite=True``, which also removes earlier ``<prefix><index>.png``
    frames past the new clip's end (other files stay). mp4 needs even W and H (yuv420p). Returns the written
    paths.

    Shapes:
        frames (F, H, W, 3) uint8
    """
    frames = _check_frames(frames)
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    out = Path(out)
    if out.suffix.lower() == ".mp4":
        if out.exists() and not overwrite:
            raise FileExistsError(f"out: {str(out)!r} exists (pass overwrite=True to replace it)")
        _write_mp4(out, frames, fps)
        return [out]
    if out.suffix.lower() in VIDEO_SUFFIXES or out.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"out: expected a path ending in .mp4 or a folder, got {str(out)!r}")
    digits = max(FRAME_DIGITS, len(str(len(frames) - 1)))
    paths = [out / f"{prefix}{i:0{digits}d}.png" for i in range(len(frames))]
    if not overwrite:
        clash = [p for p in paths if p.exists()]
        if clash:
            raise FileExistsError(
                f"out: {len(clash)} frame file(s) already exist, e.g. {str(clash[0])!r} "
                "(pass overwrite=True to replace them)")
    out.mkdir(parents=True, exist_ok=True)
    for p, f in zip(paths, frames):
        Image.fromarray(f).save(p, compress_level=1)
    if overwrite:  # a longer earlier clip's frames would otherwise read as part of this one
        written = {p.name for p in paths}
        pattern = re.compile(re.escape(prefix) + r"\d+\.png")
        for stale in out.iterdir():
            if stale.name not in written and pattern.fullmatch(stale.name) and stale.is_file():
                stale.unlink()
    return paths


def _check_frames(frames: object) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames: expected a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames: expected dtype uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"frames: expected shape (F, H, W, 3) with F, H, W > 0, got {frames.shape}")
    return np.ascontiguousarray(frames)


def _write_mp4(out: Path, frames: np.ndarray, fps: float) -> None:
    import imageio_ffmpeg

    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"frames: H.264 mp4 needs an even width and height, got {w}x{h}")
    out.parent.mkdir(parents=True, exist_ok=True)
    gen = imageio_ffmpeg.write_frames(
        str(out), (w, h), fps=float(fps), codec="libx264", quality=None, macro_block_size=1,
        pix_fmt_out="yuv420p", output_params=["-crf", str(MP4_CRF)], ffmpeg_log_level="error")
    gen.send(None)
    try:
        for f in frames:
            gen.send(f)
    finally:
        gen.close()
