"""The evaluated (visual) pose of a rig -> the body's local rotations and root, with the residual.

Blender shows a rig by its evaluated pose-bone matrices (``pose_bone.matrix``, armature space),
which include everything that moves bones: keyframes, drivers, IK, Copy Rotation, Child Of.
A body can only rotate its joints about fixed offsets and move its root, so the fit is:

* each bone's local rotation is its evaluated orientation relative to its parent's, in its rest
  frame: ``Q_j = B_j^T B_p R_p^T R_j`` (``R``: the evaluated 3x3 with scale and shear removed,
  ``B``: rest orientations of ``bone.matrix_local``); the root's is ``Q_0 = B_0^T R_0``;
* the root's location follows its evaluated head: ``L = B_0^T (head_0 - rest_head_0)``;
* the residual of each joint is the distance between the head that forward kinematics of the
  fit gives (rest offsets rotated by the fitted orientations) and the evaluated head. It is zero
  for any pose made of rotations; a bone's scale or stretch, or a moved non-root bone, leaves one.

Shapes:
    pose      (F, J, 4, 4)   evaluated ``pose_bone.matrix`` per frame
    rest      (J, 4, 4)      ``bone.matrix_local``
    parents   (J,)           parent index, -1 for the root (parents come before children)
    -> quaternions (F, J, 4) local rotations (w, x, y, z) in each bone's rest frame,
       root_location (F, 3), residual (F, J) metres, scale (F, J) largest |scale - 1| of a bone
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..vendor import rotations as rot

#: a joint further than this from the evaluated head, or a bone scaled more than SCALE_TOL, is
#: reported: the body sent is not what the viewport shows
RESIDUAL_TOL_M = 1e-3
SCALE_TOL = 1e-3


@dataclasses.dataclass
class PoseFit:
    quaternions: np.ndarray
    root_location: np.ndarray
    residual: np.ndarray
    scale: np.ndarray


def _orthonormal(m: np.ndarray) -> np.ndarray:
    """The rotation nearest to each 3x3 (polar decomposition). Shapes: (..., 3, 3) -> same."""
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    flip = np.linalg.det(r) < 0  # a mirrored bone (negative scale): keep a proper rotation
    if np.any(flip):
        u = u.copy()
        u[flip, :, -1] *= -1
        r = u @ vt
    return r


def fit_pose(pose: np.ndarray, rest: np.ndarray, parents) -> PoseFit:
    """Fit the body's rotations and root to evaluated bone matrices (see the module docstring)."""
    M = np.asarray(pose, dtype=np.float64)
    rest = np.asarray(rest, dtype=np.float64)
    par = [int(p) for p in parents]
    F, J = M.shape[:2]
    if M.shape != (F, J, 4, 4) or rest.shape != (J, 4, 4) or len(par) != J:
        raise ValueError(f"pose: expected (F, {len(par)}, 4, 4) and rest ({len(par)}, 4, 4), "
                         f"got {M.shape} and {rest.shape}")
    if any(p >= j for j, p in enumerate(par)):
        raise ValueError("parents: every parent must come before its children")
    lin = M[..., :3, :3]
    scale = np.abs(np.linalg.norm(lin, axis=-2) - 1.0).max(axis=-1)
    R = _orthonormal(lin)
    B = rest[:, :3, :3]
    Bt = np.swapaxes(B, -1, -2)
    Q = np.empty_like(R)
    for j, p in enumerate(par):
        rel = R[:, j] if p < 0 else B[p] @ np.swapaxes(R[:, p], -1, -2) @ R[:, j]
        Q[:, j] = Bt[j] @ rel
    heads = M[..., :3, 3]
    rest_heads = rest[:, :3, 3]
    root = np.einsum("ij,fj->fi", Bt[0], heads[:, 0] - rest_heads[0])
    # forward kinematics of the fit, from the evaluated root head
    G = R @ Bt  # (F, J, 3, 3) armature-space rotation of each bone away from its rest
    fk = np.empty_like(heads)
    for j, p in enumerate(par):
        fk[:, j] = heads[:, 0] if p < 0 else fk[:, p] + np.einsum(
            "fij,j->fi", G[:, p], rest_heads[j] - rest_heads[p])
    residual = np.linalg.norm(fk - heads, axis=-1)
    return PoseFit(quaternions=rot.matrix_to_quaternion(Q), root_location=root, residual=residual, scale=scale)


def describe_issue(fit: PoseFit, names: list[str], frames: list[int], rig_name: str) -> str:
    """One line for the artist when the fit is not what the viewport shows, else ''. Names the
    top-most bone at fault (scaled/stretched, or moved off its parent) and the largest residual."""
    scaled = np.nonzero(fit.scale.max(axis=0) > SCALE_TOL)[0]
    off = np.nonzero(fit.residual.max(axis=0) > RESIDUAL_TOL_M)[0]
    if not len(scaled) and not len(off):
        return ""
    f, j = np.unravel_index(int(np.argmax(fit.residual)), fit.residual.shape)
    worst = (f"the sent body is up to {1000 * fit.residual[f, j]:.0f} mm off what the viewport shows "
             f"('{names[j]}', frame {frames[f]})")
    if len(scaled):
        b = int(scaled[0])
        # the first frame at the largest scale (frames equal up to round-off count as equal)
        fs = int(np.flatnonzero(fit.scale[:, b] >= fit.scale[:, b].max() - 1e-9)[0])
        return (f"{rig_name}: bone '{names[b]}' is scaled or stretched ({fit.scale[fs, b]:+.0%} at frame "
                f"{frames[fs]}), which the body cannot do; {worst}")
    b = int(off[0])
    return f"{rig_name}: bone '{names[b]}' is moved off its parent (only the root can move); {worst}"
