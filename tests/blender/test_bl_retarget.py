"""Retarget a real BVH, imported by Blender's own BVH importer, onto the MIMO rig: every mapped
target bone points where its source bone points, and the pelvis follows the source hips scaled
by the leg-length ratio. Also: AMASS import onto the rig through the operator."""
from __future__ import annotations

import bpy
import numpy as np
import pytest

from blender_addon.core import axes
from blender_addon.vendor import rotations as rot

# A CMU-style skeleton (Y up, facing +Z, +X = the body's left; centimetres).
_CHAINS = {
    "LowerBack": ("Hips", (0, 5, 0)), "Spine": ("LowerBack", (0, 10, 0)), "Spine1": ("Spine", (0, 10, 0)),
    "Neck": ("Spine1", (0, 15, 0)), "Head": ("Neck", (0, 8, 0)),
}
for side, sx in (("Left", 1), ("Right", -1)):
    _CHAINS.update({
        f"{side}Shoulder": ("Spine1", (3 * sx, 12, 0)), f"{side}Arm": (f"{side}Shoulder", (12 * sx, 0, 0)),
        f"{side}ForeArm": (f"{side}Arm", (28 * sx, 0, 0)), f"{side}Hand": (f"{side}ForeArm", (25 * sx, 0, 0)),
        f"{side}UpLeg": ("Hips", (9 * sx, -5, 0)), f"{side}Leg": (f"{side}UpLeg", (0, -42, 0)),
        f"{side}Foot": (f"{side}Leg", (0, -40, 0)), f"{side}ToeBase": (f"{side}Foot", (0, -5, 12)),
    })


def _write_bvh(path, frames=8, seed=0):
    rng = np.random.default_rng(seed)
    children = {}
    for name, (parent, _) in _CHAINS.items():
        children.setdefault(parent, []).append(name)
    order = []
    lines = ["HIERARCHY", "ROOT Hips", "{", "  OFFSET 0 0 0",
             "  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"]
    order.append("Hips")

    def emit(name, depth):
        pad = "  " * depth
        off = _CHAINS[name][1]
        lines.extend([f"{pad}JOINT {name}", f"{pad}{{", f"{pad}  OFFSET {off[0]} {off[1]} {off[2]}",
                      f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation"])
        order.append(name)
        for c in children.get(name, []):
            emit(c, depth + 1)
        if name not in children:
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 5 0", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    for c in children["Hips"]:
        emit(c, 1)
    lines.append("}")
    lines += ["MOTION", f"Frames: {frames}", "Frame Time: 0.0333333"]
    for f in range(frames):
        vals = [5.0 * f, 90.0 + rng.normal(scale=3), -2.0 * f]
        vals += list(rng.uniform(-35, 35, size=3 * len(order)))
        lines.append(" ".join(f"{v:.4f}" for v in vals))
    path.write_text("\n".join(lines) + "\n")


def _world_heads(arm_obj, names):
    M = np.array([list(r) for r in arm_obj.matrix_world])
    heads = np.array([list(arm_obj.pose.bones[n].head) for n in names])
    return axes.points_blender_to_wire(heads @ M[:3, :3].T + M[:3, 3])


def test_retarget_bvh_imported_by_blender(addon, tmp_path):
    from blender_addon.bl import rig_builder

    bvh = tmp_path / "walk.bvh"
    _write_bvh(bvh)
    if not hasattr(bpy.ops.import_anim, "bvh"):
        bpy.ops.preferences.addon_enable(module="io_anim_bvh")
    assert bpy.ops.import_anim.bvh(filepath=str(bvh), global_scale=0.01) == {"FINISHED"}
    source = bpy.context.active_object
    assert source.type == "ARMATURE" and "LeftForeArm" in source.pose.bones
    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    source.select_set(True)
    rig.select_set(True)
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.mimo.retarget(preset="auto") == {"FINISHED"}

    data = rig_builder.rig_data(rig["mimo_rig_data"])
    pairs = [("left_hip", "left_knee", "LeftUpLeg", "LeftLeg"), ("left_knee", "left_ankle", "LeftLeg", "LeftFoot"),
             ("right_knee", "right_ankle", "RightLeg", "RightFoot"),
             ("left_shoulder", "left_elbow", "LeftArm", "LeftForeArm"),
             ("right_elbow", "right_wrist", "RightForeArm", "RightHand"),
             ("spine3", "neck", "Spine1", "Neck"), ("neck", "head", "Neck", "Head"),
             ("spine1", "spine2", "LowerBack", "Spine")]
    scales = []
    for frame in range(1, 9):
        bpy.context.scene.frame_set(frame)
        tj = _world_heads(rig, data.joint_names)
        sj = _world_heads(source, [p[2] for p in pairs] + [p[3] for p in pairs] + ["Hips"])
        for k, (a, b, _, _) in enumerate(pairs):
            t = tj[data.joint_names.index(b)] - tj[data.joint_names.index(a)]
            s = sj[len(pairs) + k] - sj[k]
            cos = t @ s / np.linalg.norm(t) / np.linalg.norm(s)
            assert cos > 1 - 1e-6, (frame, a, np.degrees(np.arccos(min(1, cos))))
        scales.append((tj[0], sj[-1]))
    # pelvis = scale * source hips (the importer's cm -> 0.01 m, times the leg ratio)
    leg_t = sum(np.linalg.norm(np.diff(data.rest_joints[[1, 4, 7]], axis=0), axis=1))
    for rig_pelvis, hips in scales:
        assert np.abs(rig_pelvis - leg_t / 0.82 * hips).max() < 1e-5


def test_import_amass_onto_rig(addon, tmp_path):
    from blender_addon.bl import rig_builder

    rng = np.random.default_rng(3)
    poses = rng.normal(scale=0.2, size=(12, 156))
    np.savez(tmp_path / "amass.npz", poses=poses, trans=rng.normal(size=(12, 3)),
             mocap_framerate=np.float64(60.0))
    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    bpy.context.view_layer.objects.active = rig
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 30, 1.0, 1
    assert bpy.ops.mimo.import_motion(filepath=str(tmp_path / "amass.npz")) == {"FINISHED"}
    assert scene.frame_end == 6  # 12 frames at 60 fps -> 6 at 30 fps
    back = rig_builder.read_pose(rig, scene, [1, 2, 6])
    assert np.abs(back["body_pose"].reshape(3, 63) - poses[[0, 2, 10], 3:66]).max() < 1e-5
    with pytest.raises(RuntimeError, match="poses"):
        np.savez(tmp_path / "bad.npz", poses=np.zeros((3, 10)), trans=np.zeros((3, 3)),
                 mocap_framerate=np.float64(30.0))
        bpy.ops.mimo.import_motion(filepath=str(tmp_path / "bad.npz"))


def test_bvh_through_blender_importer_equals_direct_bvh_import(addon, tmp_path):
    """Blender's BVH importer + Retarget and Import Motion's own BVH reader give the same motion
    (the importer's Y-up -> Z-up turn is exactly the add-on's axis conversion)."""
    from blender_addon.bl import rig_builder

    bvh = tmp_path / "dance.bvh"
    _write_bvh(bvh, frames=6, seed=5)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 30, 1.0, 1
    if not hasattr(bpy.ops.import_anim, "bvh"):
        bpy.ops.preferences.addon_enable(module="io_anim_bvh")
    bpy.ops.import_anim.bvh(filepath=str(bvh), global_scale=0.01)
    source = bpy.context.active_object
    a = rig_builder.build_rig(rig_builder.OPEN_BODY, name="A")
    b = rig_builder.build_rig(rig_builder.OPEN_BODY, name="B")
    for o in bpy.context.view_layer.objects:
        o.select_set(o in (source, a))
    bpy.context.view_layer.objects.active = a
    assert bpy.ops.mimo.retarget(preset="cmu_bvh") == {"FINISHED"}
    bpy.context.view_layer.objects.active = b
    assert bpy.ops.mimo.import_motion(filepath=str(bvh)) == {"FINISHED"}
    frames = list(range(1, 7))
    pa = rig_builder.read_pose(a, scene, frames)
    pb = rig_builder.read_pose(b, scene, frames)
    Ra = rot.axis_angle_to_matrix(pa["axis_angle"][:, :22])
    Rb = rot.axis_angle_to_matrix(pb["axis_angle"][:, :22])
    assert np.abs(Ra - Rb).max() < 1e-4
    assert np.abs(pa["transl"] - pb["transl"]).max() < 1e-4


def _example_walk():
    """(path, clip, scene) of the shipped walk, the scene at 30 fps from frame 1."""
    import pathlib

    from blender_addon.vendor import clip as C

    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "motions" / "walk.npz"
    if not path.exists():
        pytest.skip("examples/motions/walk.npz is not in this checkout")
    clip, _ = C.load_npz(path)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 30, 1.0, 1
    return path, clip, scene


def test_import_example_walk_clip(addon):
    """The shipped real-mocap example (our clip format) lands on the rig unchanged at 30 fps."""
    from blender_addon.bl import rig_builder

    path, clip, scene = _example_walk()
    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.mimo.import_motion(filepath=str(path)) == {"FINISHED"}
    assert scene.frame_end == clip.num_frames
    frames = [1, 10, clip.num_frames]
    back = rig_builder.read_pose(rig, scene, frames)
    body = clip.bodies[0]
    idx = [f - 1 for f in frames]
    Rg = rot.axis_angle_to_matrix(back["body_pose"])
    Rw = rot.axis_angle_to_matrix(body.body_pose[idx])
    assert np.abs(Rg - Rw).max() < 1e-5
    assert np.abs(back["transl"] - body.transl[idx]).max() < 1e-5


def test_add_body_then_import_walk_keeps_the_clip_floor(addon):
    """Add Body stands the rig on the 3D cursor (origin lifted to the rest pelvis); an imported
    clip's floor (y = 0) must then land on the cursor too, not one pelvis height above it."""
    from blender_addon.bl import rig_builder
    from blender_addon.core import axes

    path, clip, scene = _example_walk()
    scene.cursor.location = (1.0, 2.0, 0.0)
    assert bpy.ops.mimo.add_body() == {"FINISHED"}
    rig = bpy.context.active_object
    assert rig.location.z > 0.5  # lifted: the rest pelvis is the rig's origin
    assert bpy.ops.mimo.import_motion(filepath=str(path)) == {"FINISHED"}
    frames = [1, 20, clip.num_frames]
    back = rig_builder.read_pose(rig, scene, frames)  # world placement, wire axes
    cursor = axes.points_blender_to_wire(np.array([[1.0, 2.0, 0.0]]))[0]
    want = clip.bodies[0].transl[[f - 1 for f in frames]] + cursor
    assert np.abs(back["transl"] - want).max() < 1e-5
