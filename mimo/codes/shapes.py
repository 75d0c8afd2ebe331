"""Synthetic closed meshes (spheres, a six-ellipsoid figure) for tests, benchmarks and demos
that need a body-sized mesh without a body model."""
from __future__ import annotations

import numpy as np


def uv_sphere(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed unit sphere: (V, 3) vertices with poles repeated per longitude, (T, 3) faces."""
    th = np.linspace(0.0, np.pi, n_lat + 1)
    ph = np.linspace(0.0, 2.0 * np.pi, n_lon, endpoint=False)
    v = np.stack([np.sin(th)[:, None] * np.cos(ph), np.cos(th)[:, None] * np.ones_like(ph),
                  np.sin(th)[:, None] * np.sin(ph)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_lat), np.arange(n_lon), indexing="ij")
    a = i * n_lon + j
    b = i * n_lon + (j + 1) % n_lon
    c, d = a + n_lon, b + n_lon
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return v, faces


# (centre, radii) of non-intersecting ellipsoids shaped like a standing figure, in SMPL axes (Y up).
FIGURE_PARTS = (
    ((0.0, 0.62, 0.0), (0.11, 0.12, 0.11)),
    ((0.0, 0.2, 0.0), (0.18, 0.28, 0.12)),
    ((-0.27, 0.22, 0.05), (0.05, 0.28, 0.05)),
    ((0.27, 0.22, 0.05), (0.05, 0.28, 0.05)),
    ((-0.1, -0.5, 0.0), (0.07, 0.4, 0.07)),
    ((0.1, -0.5, 0.0), (0.07, 0.4, 0.07)),
)


def figure(n_lat: int = 45, n_lon: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """A ~27k-triangle (defaults) figure of six ellipsoids, about 1.8 m tall, centred at the origin."""
    verts, faces, offset = [], [], 0
    for centre, radii in FIGURE_PARTS:
        v, f = uv_sphere(n_lat, n_lon)
        verts.append(v * radii + centre)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)
