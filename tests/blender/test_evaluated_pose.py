"""What the viewport shows is what is sent: the evaluated pose (IK, Copy Rotation, ...) is fitted
per frame; what a body cannot do (a scaled bone, a moved non-root bone) is warned about, naming
the bone and the residual in millimetres."""
from __future__ import annotations

import bpy
import numpy as np

from blender_addon.core import axes
from blender_addon.core import rig as rigmath
from blender_addon.core.smplh import JOINT_NAMES, PARENTS
from blender_addon.vendor import rotations as rot


def _shot(tmp_path):
    from blender_addon.bl import rig_builder
    from blender_addon.core.png import encode_png

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    rig.location = (0.3, 0.2, 1.0)
    rig.rotation_euler = (0.0, 0.0, 0.4)
    aa = np.zeros((2, 52, 3))
    aa[:, 18, 2] = [0.3, 0.6]  # left elbow bent a little (IK needs a bend to start from)
    aa[:, 19, 2] = [-0.3, -0.6]
    rig_builder.keyframe_pose(rig, aa, np.zeros((2, 3)), [1, 2])
    bpy.ops.mimo.add_camera()
    scene.frame_start, scene.frame_end = 1, 2
    char = tmp_path / "c.png"
    char.write_bytes(encode_png(np.full((16, 16, 3), 99, np.uint8)))
    scene.mimo.character = str(char)
    return scene, rig


def _empty(name, location):
    e = bpy.data.objects.new(name, None)
    bpy.context.scene.collection.objects.link(e)
    e.location = location
    return e


def _sent_joints(req, rig, frame_index):
    """Forward kinematics of what the request carries (wire world), with the rig's shaped joints."""
    from blender_addon.bl import rig_builder

    b = req.bodies[0]
    data = rig_builder.rig_data(rig["mimo_rig_data"])
    _, rest = data.shaped(np.asarray(b.betas, np.float64))
    f = frame_index
    aa = rigmath.join_smplh(b.global_orient[f:f + 1], b.body_pose[f:f + 1],
                            b.left_hand_pose[f:f + 1], b.right_hand_pose[f:f + 1])[0]
    R = rot.axis_angle_to_matrix(aa)
    G, pos = np.empty((52, 3, 3)), np.empty((52, 3))
    for j, p in enumerate(PARENTS):
        if p < 0:
            G[j], pos[j] = R[j], rest[j] + np.asarray(b.transl[f], np.float64)
        else:
            G[j], pos[j] = G[p] @ R[j], pos[p] + G[p] @ (rest[j] - rest[p])
    return pos


def _viewport_joints(scene, rig, frame):
    """Blender's evaluated bone heads (wire world)."""
    scene.frame_set(frame)
    M = rig.matrix_world
    return axes.points_blender_to_wire(np.array([list(M @ rig.pose.bones[n].head) for n in JOINT_NAMES]))


def test_ik_and_copy_rotation_are_sent_as_the_viewport_shows_them(addon, tmp_path):
    from blender_addon.bl import operators

    scene, rig = _shot(tmp_path)
    scene.frame_set(1)
    shoulder = np.array(rig.matrix_world @ rig.pose.bones["left_shoulder"].head)
    target = _empty("IK target", shoulder + (0.2, -0.25, -0.2))  # within the arm's reach
    target.keyframe_insert("location", frame=1)
    target.location = shoulder + (0.3, -0.1, 0.15)
    target.keyframe_insert("location", frame=2)
    ik = rig.pose.bones["left_elbow"].constraints.new("IK")
    ik.target, ik.chain_count = target, 2
    src = _empty("Look", (0.0, 0.0, 0.0))
    src.rotation_euler = (0.5, -0.3, 0.8)
    cr = rig.pose.bones["head"].constraints.new("COPY_ROTATION")
    cr.target = src

    warnings: list = []
    req = operators.collect_request(scene, warnings)
    assert warnings == []  # rotations only: nothing the body cannot follow
    for f, frame in enumerate((1, 2)):
        shown = _viewport_joints(scene, rig, frame)
        wrist = JOINT_NAMES.index("left_wrist")
        assert np.linalg.norm(shown[wrist] - axes.points_blender_to_wire(
            np.array([list(target.matrix_world.translation)]))[0]) < 0.05  # the IK did move the arm
        err = np.linalg.norm(_sent_joints(req, rig, f) - shown, axis=-1)
        assert err.max() < 1e-3, (frame, JOINT_NAMES[int(err.argmax())], err.max())
    # the head's world orientation is the Copy Rotation source's
    scene.frame_set(1)
    head = np.array([list(r) for r in (rig.matrix_world @ rig.pose.bones["head"].matrix).to_3x3().normalized()])
    want = np.array([list(r) for r in src.matrix_world.to_3x3()])
    assert np.abs(head - want).max() < 1e-4


def test_scaled_or_moved_bones_are_warned_about_once_with_the_residual(addon, tmp_path):
    from blender_addon.bl import operators

    scene, rig = _shot(tmp_path)
    rig.pose.bones["left_elbow"].scale = (1.5, 1.5, 1.5)
    warnings: list = []
    req = operators.collect_request(scene, warnings)
    assert len(warnings) == 1 and "bone 'left_elbow' is scaled or stretched (+50%" in warnings[0]
    mm = float(warnings[0].split(" mm off")[0].rsplit(" ", 1)[1])
    # the residual said is the largest distance between a sent joint and the viewport's
    err = max(np.linalg.norm(_sent_joints(req, rig, f) - _viewport_joints(scene, rig, frame), axis=-1).max()
              for f, frame in enumerate((1, 2)))
    assert err > 0.1 and abs(mm - 1000 * err) <= 0.5 + 1e-3

    rig.pose.bones["left_elbow"].scale = (1.0, 1.0, 1.0)
    rig.pose.bones["left_wrist"].location = (0.0, 0.0, 0.06)  # grabbed (G) in Pose Mode: 60 mm
    warnings.clear()
    operators.collect_request(scene, warnings)
    assert len(warnings) == 1
    assert "bone 'left_wrist' is moved off its parent" in warnings[0] and "60 mm off" in warnings[0]


def test_generate_reports_the_warning_before_sending(addon, tmp_path):
    scene, rig = _shot(tmp_path)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    rig.pose.bones["spine2"].scale = (1.0, 1.2, 1.0)
    scene.mimo.server = "tcp://127.0.0.1:9"  # nothing needs to answer: the warning comes first
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    from blender_addon.bl import timers

    job = timers.active(scene)
    assert "bone 'spine2' is scaled or stretched" in job.warning
    timers.cancel(scene)


def test_a_scaled_rig_object_is_refused_in_the_artists_words(addon, tmp_path):
    import pytest

    scene, rig = _shot(tmp_path)
    rig.scale = (1.2, 1.2, 1.2)
    with pytest.raises(RuntimeError, match=r"MIMO Body: the rig object is scaled \(1\.2, 1\.2, 1\.2 at frame 1\)"):
        bpy.ops.mimo.generate()
