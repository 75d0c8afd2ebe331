"""Facial landmarks of an SMPL-X body, in OpenPose's 70-point face order.

An SMPL-X model file defines landmarks as barycentric points on mesh triangles:

* ``lmk_faces_idx`` (51,), ``lmk_bary_coords`` (51, 3): brows, nose, eyes and mouth -- points
  17..67 of the 68-point (iBUG) layout that OpenPose's face uses;
* ``dynamic_lmk_faces_idx`` (79, 17), ``dynamic_lmk_bary_coords`` (79, 17, 3), when the file has
  them: the jaw line (points 0..16), one row of triangles per degree of the neck's turn about the
  vertical axis (0..39 to one side, 40..78 the other), because the visible outline of the face
  moves over the mesh as the head turns. The row is chosen as the ``smplx`` package chooses it
  (``use_face_contour=True``), so the points equal that package's landmarks.

OpenPose's points 68 and 69 are the right and left pupils. SMPL-X's eyes are never rotated here
(zero eye pose: looking straight ahead), so each pupil is taken as the centre of its eye's six
landmarks (36..41 right, 42..47 left). Points a model file does not define are NaN.

Shapes: vertices (B, V, 3), neck rotation (B, 3, 3) -> (B, 70, 3)
"""
from __future__ import annotations

import math

import numpy as np
import torch

#: OpenPose face points
NUM_FACE_POINTS = 70
#: the jaw line's rows: one per degree of neck turn, 0..MAX_TURN one way, MAX_TURN+1.. the other
MAX_TURN = 39


class FaceTables(torch.nn.Module):
    """The landmark tables of an SMPL-X model file, as buffers that move with the body."""

    def __init__(self, faces, lmk_faces_idx, lmk_bary_coords, dynamic_lmk_faces_idx=None,
                 dynamic_lmk_bary_coords=None, dtype: torch.dtype = torch.float32):
        super().__init__()
        faces = torch.as_tensor(np.asarray(faces, np.int64))
        static = torch.as_tensor(np.asarray(lmk_faces_idx, np.int64)).reshape(-1)
        if static.numel() != 51:
            raise ValueError(f"lmk_faces_idx: expected 51 landmarks, got {static.numel()}")
        self.register_buffer("static_corners", faces[static])                       # (51, 3)
        self.register_buffer("static_bary", torch.as_tensor(
            np.asarray(lmk_bary_coords, np.float64)).reshape(51, 3).to(dtype))
        self.has_contour = dynamic_lmk_faces_idx is not None and dynamic_lmk_bary_coords is not None
        if self.has_contour:
            dyn = torch.as_tensor(np.asarray(dynamic_lmk_faces_idx, np.int64))
            if dyn.shape != (2 * MAX_TURN + 1, 17):
                raise ValueError(f"dynamic_lmk_faces_idx: expected shape (79, 17), got {tuple(dyn.shape)}")
            self.register_buffer("contour_corners", faces[dyn])                     # (79, 17, 3)
            self.register_buffer("contour_bary", torch.as_tensor(
                np.asarray(dynamic_lmk_bary_coords, np.float64)).reshape(79, 17, 3).to(dtype))

    @staticmethod
    def from_model_file(d: dict, dtype: torch.dtype = torch.float32) -> FaceTables | None:
        """The tables of a model file's arrays ``d``, or None when it has no landmarks."""
        if "lmk_faces_idx" not in d or "lmk_bary_coords" not in d:
            return None
        return FaceTables(d["f"], d["lmk_faces_idx"], d["lmk_bary_coords"],
                          d.get("dynamic_lmk_faces_idx"), d.get("dynamic_lmk_bary_coords"), dtype)

    def forward(self, vertices: torch.Tensor, neck_rotation: torch.Tensor) -> torch.Tensor:
        """The 70 OpenPose face points (NaN where the file defines none).

        Shapes: vertices (B, V, 3), neck_rotation (B, 3, 3): the neck joint's rotation in world
        space (root to neck) -> (B, 70, 3)
        """
        B = vertices.shape[0]
        out = torch.full((B, NUM_FACE_POINTS, 3), math.nan, dtype=vertices.dtype, device=vertices.device)
        out[:, 17:68] = _interpolate(vertices, self.static_corners.expand(B, -1, -1),
                                     self.static_bary.expand(B, -1, -1))
        if self.has_contour:
            row = contour_row(neck_rotation)
            out[:, :17] = _interpolate(vertices, self.contour_corners[row], self.contour_bary[row])
        out[:, 68] = out[:, 36:42].mean(1)
        out[:, 69] = out[:, 42:48].mean(1)
        return out


def contour_row(neck_rotation: torch.Tensor) -> torch.Tensor:
    """The jaw-line table row for each neck rotation: its turn about the vertical axis in whole
    degrees, ``smplx``'s rule (``atan2(-R20, hypot(R00, R10))``, negated; turns one way index
    rows 0..39, clamped; the other way rows 40..78, clamped to 78).

    Shapes: (B, 3, 3) -> (B,) long
    """
    R = neck_rotation
    angle = torch.atan2(-R[:, 2, 0], torch.sqrt(R[:, 0, 0] ** 2 + R[:, 1, 0] ** 2))
    deg = torch.round(torch.clamp(-angle * 180.0 / math.pi, max=MAX_TURN)).long()
    other = torch.where(deg < -MAX_TURN, torch.full_like(deg, 2 * MAX_TURN), MAX_TURN - deg)
    return torch.where(deg < 0, other, deg)


def _interpolate(vertices: torch.Tensor, corners: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Barycentric points. Shapes: vertices (B, V, 3), corners (B, L, 3) long, bary (B, L, 3)
    -> (B, L, 3)"""
    B, L = corners.shape[:2]
    picked = torch.gather(vertices, 1, corners.reshape(B, L * 3, 1).expand(-1, -1, 3)).reshape(B, L, 3, 3)
    return (picked * bary[..., None].to(vertices.dtype)).sum(2)
