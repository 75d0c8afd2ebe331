"""Cameras for motion codes: the official default camera and an automatic framing camera.

All cameras are OpenCV pinholes (x right, y down, z forward) mapping a world point X to pixel
``K (R X + t)``, with pixel (u, v) covering [u, u+1) × [v, v+1) and centred at (u + 0.5, v + 0.5)
(docs/CONVENTIONS.md): the principal point of a centred camera is therefore exactly (W/2, H/2).
"""
from __future__ import annotations

import numpy as np

OFFICIAL_FOCAL = 5000.0  # HMR2's FOCAL_LENGTH, defined for its 256-pixel crops (docs/MIMO.md §9.7)
OFFICIAL_CROP = 256.0
# Looking at the front of an SMPL-convention body (Y up, facing +Z) from the +Z side: camera
# x = world +X (the body's left shows on the right, as when facing a person), y down = world −Y,
# z forward = world −Z. Seeing an upright world body through it equals what the official camera
# (R = I) saw of HMR2 bodies, whose global orientation carried this 180° turn about X.
FRONT_VIEW = np.diag([1.0, -1.0, -1.0])


def official_intrinsics(width: int, height: int) -> np.ndarray:
    """The official focal length 5000/256 · max(W, H), principal point at the image centre.

    Shapes: -> K (3, 3) float64
    """
    _check_positive("width", width)
    _check_positive("height", height)
    f = OFFICIAL_FOCAL / OFFICIAL_CROP * max(width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def official_camera(width: int, height: int, num_frames: int = 1):
    """The official default camera: at the origin, R = I, t = 0, looking along +Z.

    The official pipeline fed it SMPL meshes that HMR2 had already expressed in this camera's
    OpenCV frame (its global orientation includes the flip to y-down) and placed by their
    translation, so a clip must carry such a pose and ``transl`` for the body to be in view.

    Shapes: -> K (F, 3, 3), R (F, 3, 3), t (F, 3) float64
    """
    _check_positive("num_frames", num_frames)
    K = official_intrinsics(width, height)
    return (np.repeat(K[None], num_frames, 0), np.repeat(np.eye(3)[None], num_frames, 0),
            np.zeros((num_frames, 3)))


def auto_camera(vertices, width: int, height: int, margin: float = 0.05, R=None,
                focal: float | None = None, num_frames: int | None = None):
    """A fixed camera that keeps every vertex of every frame in view.

    The camera keeps the orientation ``R`` (default :data:`FRONT_VIEW`: the body's front, world Y up
    on screen) and the official focal length unless ``focal`` is given. It is centred on the
    bounding box of all points seen along its axes and placed as close as possible with every point
    inside the image shrunk by ``margin`` (a fraction of each side) on every side.

    Shapes: vertices (F, V, 3) or (N, 3) world points
        -> K (F, 3, 3), R (F, 3, 3), t (F, 3) float64, the same camera repeated for every frame
        (F = ``num_frames``, default the first dimension of a 3-D ``vertices``, else 1)
    """
    pts = np.asarray(vertices, dtype=np.float64)
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3 or pts.size == 0:
        raise ValueError(f"vertices: expected (F, V, 3) or (N, 3) points, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("vertices: expected finite values, got NaN or inf")
    if num_frames is None:
        num_frames = pts.shape[0] if pts.ndim == 3 else 1
    _check_positive("num_frames", num_frames)
    if not (isinstance(margin, (int, float)) and 0 <= margin < 0.5):
        raise ValueError(f"margin: expected a fraction in [0, 0.5), got {margin!r}")
    R = FRONT_VIEW if R is None else np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError(f"R: expected a (3, 3) rotation matrix, got {R.tolist()}")
    K = official_intrinsics(width, height)
    if focal is not None:
        if not (isinstance(focal, (int, float)) and np.isfinite(focal) and focal > 0):
            raise ValueError(f"focal: expected a positive number of pixels, got {focal!r}")
        K[0, 0] = K[1, 1] = float(focal)
    q = pts.reshape(-1, 3) @ R.T  # points along the camera's axes
    c = (q.min(0) + q.max(0)) / 2.0
    half_x = width / 2.0 * (1.0 - 2.0 * margin) / K[0, 0]  # tangent of the usable half field of view
    half_y = height / 2.0 * (1.0 - 2.0 * margin) / K[1, 1]
    need = np.maximum(np.abs(q[:, 0] - c[0]) / half_x, np.abs(q[:, 1] - c[1]) / half_y)
    extent = float(np.ptp(q, axis=0).max())
    # Every point must be at least `need` in front of the camera, and clear of the near plane.
    cz = float(np.min(q[:, 2] - np.maximum(need, 0.1 + 0.01 * extent)))
    t = -np.array([c[0], c[1], cz])
    return (np.repeat(K[None], num_frames, 0), np.repeat(R[None], num_frames, 0),
            np.repeat(t[None], num_frames, 0))


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
