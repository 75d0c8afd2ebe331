"""Read a source armature's motion from Blender and bake it onto a MIMO rig."""
from __future__ import annotations

import bpy
import numpy as np

from ..core.retarget import retarget_arrays
from . import rig_builder


def read_source(arm_obj: bpy.types.Object, scene: bpy.types.Scene, frames: list[int]) -> dict:
    """Plain arrays of the source armature (see core.retarget). Any rotation mode."""
    bones = arm_obj.data.bones
    names = [b.name for b in bones]
    parent_names = [b.parent.name if b.parent else None for b in bones]
    head = np.array([list(b.head_local) for b in bones])
    rest = np.array([[list(r) for r in b.matrix_local.to_3x3()] for b in bones])
    root = next(n for n, p in zip(names, parent_names) if p is None)
    F, N = len(frames), len(names)
    basis = np.empty((F, N, 3, 3))
    root_head = np.empty((F, 3))
    keep = scene.frame_current
    pbs = [arm_obj.pose.bones[n] for n in names]
    for f, frame in enumerate(frames):
        scene.frame_set(frame)
        for i, pb in enumerate(pbs):
            basis[f, i] = [list(r) for r in pb.matrix_basis.to_3x3()]
        root_head[f] = list(arm_obj.pose.bones[root].head)
    object_matrix = np.array([list(r) for r in arm_obj.matrix_world])
    scene.frame_set(keep)
    return {"names": names, "parent_names": parent_names, "head_local": head, "matrix_local": rest,
            "basis": basis, "root_head": root_head, "object_matrix": object_matrix}


def action_frames(arm_obj: bpy.types.Object, scene: bpy.types.Scene) -> list[int]:
    """The frames to sample: the source action's range, else the scene's."""
    ad = arm_obj.animation_data
    if ad is not None and ad.action is not None:
        a, b = ad.action.frame_range
        return list(range(int(round(a)), int(round(b)) + 1))
    return list(range(scene.frame_start, scene.frame_end + 1))


def retarget_onto(source: bpy.types.Object, rig: bpy.types.Object, scene: bpy.types.Scene,
                  preset: str = "auto", frames: list[int] | None = None) -> dict:
    """Bake ``source``'s motion onto ``rig`` at the same scene frames; returns the core result."""
    frames = frames or action_frames(source, scene)
    data = rig_builder.rig_data(rig["mimo_rig_data"])
    _, joints = data.shaped(rig_builder.betas_of(rig) if data.num_betas else None)
    res = retarget_arrays(**read_source(source, scene, frames), target_rest_joints=joints, preset=preset)
    rig_builder.keyframe_pose(rig, res["axis_angle"], res["transl"], frames)
    res["frames"] = frames
    return res
