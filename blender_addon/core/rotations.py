"""Rotation conversions on numpy arrays (float64): axis-angle <-> matrix <-> quaternion (w, x, y, z).

Shapes:
    axis_angle  (..., 3)     direction = axis, norm = angle in radians
    matrix      (..., 3, 3)  proper rotation, acts on column vectors
    quaternion  (..., 4)     (w, x, y, z), unit norm
"""
from __future__ import annotations

import numpy as np


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula. Shapes: axis_angle (..., 3) -> (..., 3, 3)."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    if aa.shape[-1:] != (3,):
        raise ValueError(f"axis_angle: expected shape (..., 3), got {aa.shape}")
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)
    small = theta < 1e-12
    k = np.where(small, 0.0, aa / np.where(small, 1.0, theta))
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(aa.shape[:-1] + (3, 3))
    s = np.sin(theta)[..., None]
    c = np.cos(theta)[..., None]
    return np.eye(3) + s * K + (1.0 - c) * (K @ K)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """Shepperd's method, w >= 0. Shapes: matrix (..., 3, 3) -> (..., 4)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"matrix: expected shape (..., 3, 3), got {m.shape}")
    flat = m.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4))
    for i, r in enumerate(flat):
        tr = r[0, 0] + r[1, 1] + r[2, 2]
        if tr > 0:
            s = 2.0 * np.sqrt(tr + 1.0)
            q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
            q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif r[1, 1] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
            q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
            q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
        q = np.asarray(q)
        out[i] = q / np.linalg.norm(q) * (1.0 if q[0] >= 0 else -1.0)
    return out.reshape(m.shape[:-2] + (4,))


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """Shapes: quaternion (..., 4) (w, x, y, z; normalised here) -> (..., 3, 3)."""
    q = np.asarray(quaternion, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f"quaternion: expected shape (..., 4), got {q.shape}")
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def quaternion_to_axis_angle(quaternion: np.ndarray) -> np.ndarray:
    """Angle in [0, pi]. Shapes: quaternion (..., 4) -> (..., 3)."""
    q = np.asarray(quaternion, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., :1])
    small = s < 1e-12
    # first-order expansion near identity keeps full precision for tiny angles
    return np.where(small, 2.0 * v, v / np.where(small, 1.0, s) * angle)


def axis_angle_to_quaternion(axis_angle: np.ndarray) -> np.ndarray:
    """Shapes: axis_angle (..., 3) -> (..., 4) (w, x, y, z)."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    if aa.shape[-1:] != (3,):
        raise ValueError(f"axis_angle: expected shape (..., 3), got {aa.shape}")
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)
    small = theta < 1e-12
    axis = aa / np.where(small, 1.0, theta)
    half = 0.5 * theta
    xyz = np.where(small, 0.5 * aa, axis * np.sin(half))
    return np.concatenate([np.cos(half), xyz], axis=-1)


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """Shapes: matrix (..., 3, 3) -> (..., 3)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))
