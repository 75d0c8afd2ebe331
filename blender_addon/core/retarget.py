"""Retarget a Blender armature's keyframed motion onto the MIMO rig through the one retargeting
implementation of the project (``mimo/motion/retarget.py``, vendored byte-identically).

The bpy layer reads plain arrays from the source armature (bl/retarget.py); this module turns
them into the vendored ``SourceSkeleton`` in the source armature's *world* (object transform
included: rotation into ``world_to_smpl``, uniform scale into the positions) and returns SMPL-H
parameters in wire axes, ready for ``rig_builder.keyframe_pose``.

Shapes:
    head_local (N, 3), matrix_local (N, 3, 3)   rest bones in armature space
    basis (F, N, 3, 3)                          pose-bone matrix_basis rotations
    root_head (F, 3)                            posed head of the root bone, armature space
    object_matrix (4, 4)                        source armature object -> Blender world
    target_rest_joints (52, 3)                  the rig's shaped rest joints (wire)
"""
from __future__ import annotations

import numpy as np

from .axes import BLENDER_TO_WIRE
from .rig import join_smplh

PRESET_NAMES = ("auto", "mixamo", "rigify", "cmu_bvh", "smpl")


def topological_order(names: list[str], parent_names: list[str | None]) -> list[int]:
    """Indices with every parent before its children (Blender may list bones otherwise)."""
    pos = {n: i for i, n in enumerate(names)}
    order, seen = [], set()

    def visit(i: int, depth: int = 0) -> None:
        if i in seen:
            return
        if depth > len(names):
            raise ValueError("parents: the bone hierarchy has a cycle")
        p = parent_names[i]
        if p is not None:
            visit(pos[p], depth + 1)
        seen.add(i)
        order.append(i)

    for i in range(len(names)):
        visit(i)
    return order


def retarget_arrays(names: list[str], parent_names: list[str | None], head_local: np.ndarray,
                    matrix_local: np.ndarray, basis: np.ndarray, root_head: np.ndarray,
                    object_matrix: np.ndarray, target_rest_joints: np.ndarray,
                    preset: str = "auto", scale: float | None = None) -> dict:
    """Retarget; raises ``ValueError`` naming what does not fit.

    Shapes: see the module docstring -> axis_angle (F, 52, 3), transl (F, 3); plus ``scale``
            (metres per source unit), ``bone_map`` (SMPL joint -> source bone), ``preset``
    """
    from ..vendor import retarget as rt

    if preset not in PRESET_NAMES:
        raise ValueError(f"preset: expected one of {PRESET_NAMES}, got {preset!r}")
    order = topological_order(names, parent_names)
    pos = {names[i]: k for k, i in enumerate(order)}
    names_o = [names[i] for i in order]
    parents_o = [pos[parent_names[i]] if parent_names[i] is not None else -1 for i in order]
    roots = [k for k, p in enumerate(parents_o) if p < 0]
    M = np.asarray(object_matrix, dtype=np.float64)
    svals = np.linalg.norm(M[:3, :3], axis=0)
    if np.ptp(svals) > 1e-4 * svals.max():
        raise ValueError(f"object_matrix: the source armature needs a uniform scale, got {svals.round(4).tolist()}")
    s = float(svals.mean())
    Ro = M[:3, :3] / s
    # positions in "armature orientation, world units": world = Ro @ p + t
    rest = np.asarray(head_local, dtype=np.float64)[order] * s
    root = (np.asarray(root_head, dtype=np.float64) * s) + Ro.T @ M[:3, 3]
    if len(roots) != 1:
        raise ValueError(f"source: expected one root bone, got {[names_o[r] for r in roots]}")
    skel = rt.SourceSkeleton(names=names_o, parents=parents_o, rest_positions=rest,
                             local_rotations=np.asarray(basis, dtype=np.float64)[:, order],
                             root_positions=root,
                             rest_rotations=np.asarray(matrix_local, dtype=np.float64)[order])
    out = rt.retarget(skel, target_rest_joints, bone_map=None if preset == "auto" else preset,
                      world_to_smpl=BLENDER_TO_WIRE @ Ro, scale=scale)
    aa = join_smplh(out["global_orient"], out["body_pose"], out["left_hand_pose"], out["right_hand_pose"])
    return {"axis_angle": aa, "transl": out["transl"], "scale": out["scale"],
            "bone_map": out["bone_map"], "preset": out["preset"] or preset}
