"""Blender world (Z up) <-> wire world (SMPL axes, Y up).

A point ``(x, y, z)`` in Blender is ``(x, z, -y)`` on the wire: ``w = C @ b`` with the proper
rotation ``C`` below (a -90° turn about +X). Rotations conjugate: ``R_wire = C @ R_blender @ C.T``.
These four functions are the only place the convention lives; each pair is an exact inverse.

Shapes:
    points     (..., 3)
    rotations  (..., 3, 3)
"""
from __future__ import annotations

import numpy as np

#: ``wire = BLENDER_TO_WIRE @ blender`` (rows: x_w = x_b, y_w = z_b, z_w = -y_b).
BLENDER_TO_WIRE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
WIRE_TO_BLENDER = BLENDER_TO_WIRE.T.copy()


def _check(name: str, a: np.ndarray, tail: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape[a.ndim - len(tail):] != tail or a.ndim < len(tail):
        want = "(..., " + ", ".join(map(str, tail)) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
    return a


def points_blender_to_wire(points: np.ndarray) -> np.ndarray:
    """Blender world points -> wire points. Shapes: points (..., 3) -> (..., 3)."""
    return _check("points", points, (3,)) @ BLENDER_TO_WIRE.T


def points_wire_to_blender(points: np.ndarray) -> np.ndarray:
    """Wire points -> Blender world points (inverse of :func:`points_blender_to_wire`).
    Shapes: points (..., 3) -> (..., 3)."""
    return _check("points", points, (3,)) @ WIRE_TO_BLENDER.T


def rotations_blender_to_wire(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices acting on Blender vectors -> the same rotations acting on wire vectors.
    Shapes: rotations (..., 3, 3) -> (..., 3, 3)."""
    return BLENDER_TO_WIRE @ _check("rotations", rotations, (3, 3)) @ WIRE_TO_BLENDER


def rotations_wire_to_blender(rotations: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotations_blender_to_wire`. Shapes: rotations (..., 3, 3) -> (..., 3, 3)."""
    return WIRE_TO_BLENDER @ _check("rotations", rotations, (3, 3)) @ BLENDER_TO_WIRE
