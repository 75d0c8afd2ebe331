"""Rotation helpers in pure numpy (stdlib + numpy only: the Blender add-on vendors this file).

Conventions: rotation matrices act on column vectors (``x' = R @ x``); quaternions are
``(w, x, y, z)``; axis-angle vectors are ``angle * unit_axis`` (radians), as SMPL uses.

Shapes:
    axis-angle (..., 3), matrices (..., 3, 3), quaternions (..., 4)
"""
from __future__ import annotations

import numpy as np


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula, exact to round-off for tiny angles.

    Shapes:
        rotvec (..., 3) -> (..., 3, 3)
    """
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle2 = np.sum(rotvec * rotvec, axis=-1)[..., None, None]
    small = angle2 < 1e-12
    angle = np.sqrt(np.where(small, 1.0, angle2))
    a = np.where(small, 1.0 - angle2 / 6.0, np.sin(angle) / angle)
    b = np.where(small, 0.5 - angle2 / 24.0, (1.0 - np.cos(angle)) / (angle * angle))
    x, y, z = rotvec[..., 0], rotvec[..., 1], rotvec[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(rotvec.shape + (3,))
    return np.eye(3) + a * k + b * (k @ k)


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """Unit quaternion (w >= 0) of rotation matrices (Shepperd's method, stable everywhere).

    Shapes:
        m (..., 3, 3) -> (..., 4)
    """
    m = np.asarray(m, dtype=np.float64)
    shape = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack([
        np.stack([1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0],
                  m[:, 1, 0] - m[:, 0, 1]], -1),
        np.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                  m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
        np.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0],
                  1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], -1),
        np.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                  1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
    ], axis=1)  # (N, 4 candidates, 4)
    diag = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)
    best = np.argmax(diag, axis=-1)
    q = cand[np.arange(len(m)), best]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q.reshape(shape + (4,))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices of (not necessarily unit) quaternions ``(w, x, y, z)``.

    Shapes:
        q (..., 4) -> (..., 3, 3)
    """
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = (q[..., i] for i in range(4))
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], axis=-1).reshape(q.shape[:-1] + (3, 3))


def quaternion_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """Axis-angle with angle in [0, pi] of quaternions ``(w, x, y, z)``.

    Shapes:
        q (..., 4) -> (..., 3)
    """
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., :1])
    small = s < 1e-8
    # angle / sin(angle/2) -> 2 / w near zero (first-order exact)
    scale = np.where(small, 2.0 / np.maximum(q[..., :1], 1e-12), angle / np.where(small, 1.0, s))
    return q[..., 1:] * scale


def axis_angle_to_quaternion(rotvec: np.ndarray) -> np.ndarray:
    """Shapes:
        rotvec (..., 3) -> (..., 4)
    """
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    half = 0.5 * angle
    small = angle < 1e-8
    k = np.where(small, 0.5 - angle * angle / 48.0, np.sin(half) / np.where(small, 1.0, angle))
    return np.concatenate([np.cos(half), rotvec * k], axis=-1)


def matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    """Shapes:
        m (..., 3, 3) -> (..., 3)
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Product of elementary rotations in the order the axes are listed (BVH convention:
    channels "Zrotation Xrotation Yrotation" give ``Rz @ Rx @ Ry``), angles in degrees.

    Shapes:
        angles_deg (..., len(order)) -> (..., 3, 3)
    """
    angles = np.radians(np.asarray(angles_deg, dtype=np.float64))
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for i, axis in enumerate(order.upper()):
        vec = np.zeros(angles.shape[:-1] + (3,))
        vec[..., "XYZ".index(axis)] = angles[..., i]
        out = out @ axis_angle_to_matrix(vec)
    return out


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation along the shorter arc.

    Shapes:
        q0 (..., 4), q1 (..., 4), t (...) or broadcastable -> (..., 4)
    """
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    near = dot > 0.9995
    sin_t = np.sin(np.where(near, 1.0, theta))
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / sin_t)
    w1 = np.where(near, t, np.sin(t * theta) / sin_t)
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def align_vectors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction ``a`` onto direction ``b``.

    Shapes:
        a (3,), b (3,) -> (3, 3)
    """
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-12:  # opposite: turn by pi about any axis perpendicular to a
        perp = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(perp) < 1e-6:
            perp = np.cross(a, [0.0, 1.0, 0.0])
        return axis_angle_to_matrix(np.pi * perp / np.linalg.norm(perp))
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def frame_from_vectors(x: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Right-handed orthonormal frame with first axis along ``x`` and second close to ``up``
    (columns are the axes).

    Shapes:
        x (3,), up (3,) -> (3, 3)
    """
    x = np.asarray(x, dtype=np.float64) / np.linalg.norm(x)
    y = np.asarray(up, dtype=np.float64) - np.dot(up, x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)], axis=-1)
