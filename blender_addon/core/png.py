"""A minimal PNG writer (RGB8, zlib) so frames are written on the receiving thread without bpy,
and the reader of exactly those files (8-bit RGB, filter 0, one or more IDAT chunks).

Shapes: image (H, W, 3) uint8, top row first.
"""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 3) -> bytes:
    """PNG bytes of an RGB uint8 image. Shapes: image (H, W, 3)."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape:
        raise ValueError(f"image: expected a non-empty (H, W, 3) uint8 array, got {a.shape} {a.dtype}")
    H, W, _ = a.shape
    raw = np.concatenate([np.zeros((H, 1), np.uint8), a.reshape(H, W * 3)], axis=1).tobytes()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b""))


def write_png(path: str, image: np.ndarray) -> None:
    """Write ``image`` to ``path``; refuses to replace an existing file. The bytes go to
    ``path + ".part"`` first and are renamed when complete, so a reader listing the folder (a job
    that ends mid-write) never sees half a PNG under the final name."""
    data = encode_png(image)
    if os.path.exists(path):
        raise FileExistsError(f"{path}: already exists")
    part = path + ".part"
    with open(part, "xb") as f:
        f.write(data)
    os.replace(part, path)


def read_png(path: str) -> np.ndarray:
    """An image written by :func:`write_png` (8-bit RGB, no filtering); other PNGs are refused.
    Shapes: -> (H, W, 3) uint8"""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, W, H = 8, b"", 0, 0
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            W, H, depth, kind = struct.unpack(">IIBB", body[:10])
            if (depth, kind) != (8, 2):
                raise ValueError(f"{path}: expected 8-bit RGB, got depth {depth}, colour type {kind}")
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(H, 1 + 3 * W)
    if rows[:, 0].any():
        raise ValueError(f"{path}: filtered scanlines (only the add-on's own unfiltered PNGs are read)")
    return rows[:, 1:].reshape(H, W, 3).copy()
