"""Depth and normal passes as PNG images, for video models that read control images rather than
arrays. ``mimo export`` and the Blender add-on's *Export Passes* both write them with this module,
next to the float arrays (``depth.npy``, ``normal.npy``), so the two offer the same formats:

* ``normal/frame_00000.png`` ... — 8-bit RGB normal map: the unit normal in view axes (x right,
  y up, z toward the camera: the OpenCV camera's x, -y, -z), each component mapped from [-1, 1]
  to 0..255 (``round((v + 1) * 127.5)``), so a surface facing the camera is (128, 128, 255);
  black where nothing is (the mask tells body from background).
* ``depth/frame_00000.png`` ... — 16-bit greyscale: millimetres along the optical axis (OpenCV
  ``z``), 0 where nothing is, 65535 for 65.535 m and farther.

The Blender add-on vendors a byte-identical copy (``blender_addon/vendor/pass_images.py``); it may
import only the standard library and numpy.

Shapes: depth (F, H, W) float metres, normal (F, H, W, 3) float, OpenCV camera axes
"""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np

#: the folders written by :func:`write_pass_images`, inside the export folder
FOLDERS = ("depth", "normal")


def normal_rgb8(normal: np.ndarray) -> np.ndarray:
    """(H, W, 3) OpenCV-camera normals (0 where nothing) -> (H, W, 3) uint8 normal map."""
    n = np.asarray(normal, np.float64)
    view = n * np.array([1.0, -1.0, -1.0])
    rgb = np.round((np.clip(view, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    rgb[~n.any(axis=-1)] = 0
    return rgb


def depth_mm16(depth: np.ndarray) -> np.ndarray:
    """(H, W) depth in metres (0 where nothing) -> (H, W) uint16 millimetres."""
    d = np.asarray(depth, np.float64)
    return np.round(np.clip(d, 0.0, 65.535) * 1000.0).astype(np.uint16)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image (8-bit RGB) or an (H, W) uint16 one (16-bit grey)."""
    a = np.asarray(image)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3:
        depth, kind, rows = 8, 2, a.reshape(a.shape[0], -1)
    elif a.dtype == np.uint16 and a.ndim == 2:
        depth, kind, rows = 16, 0, a.astype(">u2").view(np.uint8)
    else:
        raise ValueError(f"image: expected (H, W, 3) uint8 or (H, W) uint16, got {a.shape} {a.dtype}")
    if 0 in a.shape:
        raise ValueError(f"image: expected a non-empty image, got {a.shape}")
    H, W = a.shape[:2]
    raw = np.concatenate([np.zeros((H, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per row
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, depth, kind, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))


def write_pass_images(folder: str, depth: np.ndarray, normal: np.ndarray, overwrite: bool = False) -> int:
    """Write ``depth/`` and ``normal/`` frame PNGs into ``folder``; an existing file is refused
    (``FileExistsError``) unless ``overwrite``. Returns the number of frames."""
    depth, normal = np.asarray(depth), np.asarray(normal)
    if depth.ndim != 3 or normal.shape != depth.shape + (3,):
        raise ValueError(f"depth, normal: expected (F, H, W) and (F, H, W, 3), got {depth.shape} and {normal.shape}")
    for name in FOLDERS:
        os.makedirs(os.path.join(folder, name), exist_ok=True)
    mode = "wb" if overwrite else "xb"
    for i in range(len(depth)):
        for name, image in (("depth", depth_mm16(depth[i])), ("normal", normal_rgb8(normal[i]))):
            with open(os.path.join(folder, name, f"frame_{i:05d}.png"), mode) as f:
                f.write(encode_png(image))
    return len(depth)
