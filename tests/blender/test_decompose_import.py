"""A decomposed clip imports into real Blender: ``tests/fixtures/decomposed_synth.npz`` is the
``motion.npz`` that ``mimo decompose``'s pipeline wrote for a synthetic clip (true keypoints
path, made by ``benchmarks/decompose_synth.py --motion-out``); Import Motion keys it onto the
open-body rig unchanged, and its camera track reads back with the add-on's vendored reader."""
from __future__ import annotations

import pathlib

import bpy
import numpy as np

from blender_addon.vendor import rotations as rot

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "decomposed_synth.npz"


def test_decomposed_motion_imports_onto_the_rig(addon):
    from blender_addon.bl import rig_builder
    from blender_addon.vendor import clip as C

    clip, camera = C.load_npz(FIXTURE)
    assert camera is not None and camera.num_frames == clip.num_frames
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = int(clip.fps), 1.0, 1
    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.mimo.import_motion(filepath=str(FIXTURE)) == {"FINISHED"}
    assert scene.frame_end == clip.num_frames
    frames = [1, clip.num_frames // 2, clip.num_frames]
    back = rig_builder.read_pose(rig, scene, frames)
    body = clip.bodies[0]
    idx = [f - 1 for f in frames]
    assert np.abs(rot.axis_angle_to_matrix(back["body_pose"]) - rot.axis_angle_to_matrix(body.body_pose[idx])).max() < 1e-4
    assert np.abs(back["transl"] - body.transl[idx]).max() < 1e-4
