"""Rig builder in real Blender: hierarchy, SMPL parameters -> keyframes -> read back, the deformed
mesh against linear blend skinning (numpy here; mimo.body where torch exists), shape sliders."""
from __future__ import annotations

import bpy
import numpy as np
import pytest

from blender_addon.core import axes
from blender_addon.core.smplh import JOINT_NAMES, PARENTS
from blender_addon.vendor import rotations as rot


def _lbs_wire(arr, aa, transl, betas=None):
    """Independent reference: SMPL-style LBS in wire axes (rotations about the shaped rest joints).
    Shapes: aa (F, J, 3), transl (F, 3) -> (F, V, 3)"""
    v0 = arr["rest_vertices"].astype(np.float64)
    j0 = arr["rest_joints"].astype(np.float64)
    if betas is not None:
        v0 = v0 + arr["shapedirs"] @ betas
        j0 = j0 + arr["joint_shapedirs"] @ betas
    W = arr["skin_weights"].astype(np.float64)
    out = []
    for f in range(aa.shape[0]):
        R = rot.axis_angle_to_matrix(aa[f])
        G = [None] * len(PARENTS)
        T = np.zeros((len(PARENTS), 3, 4))
        Gpos = {}
        for j, p in enumerate(PARENTS):
            G[j] = R[j] if p < 0 else G[p] @ R[j]
            pos = j0[j] if p < 0 else Gpos[p] + G[p] @ (j0[j] - j0[p])
            Gpos[j] = pos
            T[j, :, :3] = G[j]
            T[j, :, 3] = pos - G[j] @ j0[j]
        A = np.einsum("vj,jab->vab", W, T)
        out.append(np.einsum("vab,vb->va", A[:, :, :3], v0) + A[:, :, 3] + transl[f])
    return np.stack(out)


def _world_vertices_wire(mesh_obj):
    dg = bpy.context.evaluated_depsgraph_get()
    ev = mesh_obj.evaluated_get(dg)
    me = ev.to_mesh()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    M = np.array([list(r) for r in mesh_obj.matrix_world])
    world = co.reshape(-1, 3).astype(np.float64) @ M[:3, :3].T + M[:3, 3]
    return axes.points_blender_to_wire(world)


def _random_pose(rng, F, scale=0.6):
    aa = rng.normal(scale=scale, size=(F, 52, 3))
    transl = rng.normal(scale=0.3, size=(F, 3))
    return aa, transl


def test_rig_hierarchy_rest_and_skin(addon, rig_file):
    from blender_addon.bl import rig_builder

    path, arr = rig_file
    rig = rig_builder.build_rig(path)
    bones = rig.data.bones
    assert [b.name for b in bones if b.parent is None] == ["pelvis"]
    for j, name in enumerate(JOINT_NAMES):
        b = bones[name]
        assert (b.parent.name if b.parent else None) == (JOINT_NAMES[PARENTS[j]] if PARENTS[j] >= 0 else None)
        head = axes.points_blender_to_wire(np.array(b.head_local))
        assert np.abs(head - arr["rest_joints"][j]).max() < 1e-6
    mesh = bpy.data.objects[rig["mimo_mesh"]]
    assert mesh.parent == rig and mesh.modifiers[0].type == "ARMATURE" and mesh.modifiers[0].object == rig
    assert {g.name for g in mesh.vertex_groups} == set(JOINT_NAMES)
    v = 8 * 5 + 3  # a vertex of joint 5's box: its weights are joint 5's and its parent's
    got = {mesh.vertex_groups[g.group].name: g.weight for g in mesh.data.vertices[v].groups}
    want = {JOINT_NAMES[j]: arr["skin_weights"][v, j] for j in np.nonzero(arr["skin_weights"][v])[0]}
    assert got.keys() == want.keys() and all(abs(got[k] - want[k]) < 1e-6 for k in got)
    # zero pose: the mesh is the rest mesh
    assert np.abs(_world_vertices_wire(mesh) - arr["rest_vertices"]).max() < 1e-6


def test_smpl_params_keyframes_read_back(addon, rig_file):
    from blender_addon.bl import rig_builder

    path, arr = rig_file
    rig = rig_builder.build_rig(path)
    rng = np.random.default_rng(11)
    F = 5
    aa, transl = _random_pose(rng, F, scale=0.9)
    frames = [1, 2, 3, 4, 5]
    rig_builder.keyframe_pose(rig, aa, transl, frames)
    back = rig_builder.read_pose(rig, bpy.context.scene, frames)
    got = back["axis_angle"]
    # compare as rotations (axis-angle is unique for angles < pi, which these are)
    err = np.linalg.norm(rot.matrix_to_axis_angle(
        np.swapaxes(rot.axis_angle_to_matrix(got), -1, -2) @ rot.axis_angle_to_matrix(aa)), axis=-1)
    assert err.max() < 1e-5
    assert np.abs(back["transl"] - transl).max() < 1e-5
    assert back["body_pose"].shape == (F, 21, 3) and back["left_hand_pose"].shape == (F, 15, 3)
    # the mesh Blender deforms is the LBS of those parameters
    bpy.context.scene.frame_set(3)
    want = _lbs_wire(arr, aa[2:3], transl[2:3])[0]
    assert np.abs(_world_vertices_wire(bpy.data.objects[rig["mimo_mesh"]]) - want).max() < 1e-4


def test_moved_rig_object_folds_into_global_orient_and_transl(addon, rig_file):
    from blender_addon.bl import rig_builder

    path, arr = rig_file
    rig = rig_builder.build_rig(path)
    rig.location = (0.5, -1.0, 0.25)
    rig.rotation_euler = (0.1, 0.2, 1.3)
    rng = np.random.default_rng(12)
    aa, transl = _random_pose(rng, 1)
    rig_builder.keyframe_pose(rig, aa, transl, [1])
    bpy.context.scene.frame_set(1)
    back = rig_builder.read_pose(rig, bpy.context.scene, [1], world=True)
    world_aa = back["axis_angle"]
    want = _lbs_wire(arr, world_aa, back["transl"])[0]
    got = _world_vertices_wire(bpy.data.objects[rig["mimo_mesh"]])
    assert np.abs(got - want).max() < 1e-4


def test_shape_sliders_move_rest_mesh_and_joints(addon, rig_file):
    from blender_addon.bl import rig_builder

    path, arr = rig_file
    rig = rig_builder.build_rig(path)
    betas = np.array([0.8, -0.9])  # within the range the body defines (sliders are limited to it)
    rig.mimo_shape[0], rig.mimo_shape[1] = betas  # the property's update callback reshapes
    joints = np.array([list(rig.data.bones[n].head_local) for n in JOINT_NAMES])
    assert np.abs(axes.points_blender_to_wire(joints) - (arr["rest_joints"] + arr["joint_shapedirs"] @ betas)).max() < 1e-5
    mesh = bpy.data.objects[rig["mimo_mesh"]]
    assert np.abs(_world_vertices_wire(mesh) - (arr["rest_vertices"] + arr["shapedirs"] @ betas)).max() < 1e-5
    # posed with a shape: still the LBS of the shaped body, and read-back returns the betas
    aa, transl = _random_pose(np.random.default_rng(13), 1)
    rig_builder.keyframe_pose(rig, aa, transl, [1])
    bpy.context.scene.frame_set(1)
    assert np.abs(_world_vertices_wire(mesh) - _lbs_wire(arr, aa, transl, betas)[0]).max() < 1e-4
    assert np.allclose(rig_builder.read_pose(rig, bpy.context.scene, [1])["betas"], betas, atol=1e-6)


def test_open_body_rig_equals_mimo_body(addon):
    """The shipped open body: Blender's deformed mesh equals mimo.body's vertices (needs torch)."""
    torch = pytest.importorskip("torch")
    body_mod = pytest.importorskip("mimo.body")
    from blender_addon.bl import rig_builder

    body = body_mod.load_body("open")
    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    assert rig["mimo_rig_data"] == rig_builder.OPEN_TOKEN  # no install path inside the blend
    rng = np.random.default_rng(14)
    aa, transl = _random_pose(rng, 1, scale=0.4)
    betas = np.array([0.5, -0.3, 0.2, 0.4, -0.6, 0.1])
    for k, b in enumerate(betas):
        rig.mimo_shape[k] = b
    rig_builder.keyframe_pose(rig, aa, transl, [1])
    bpy.context.scene.frame_set(1)
    got = _world_vertices_wire(bpy.data.objects[rig["mimo_mesh"]])
    t = lambda a: torch.as_tensor(a[None], dtype=torch.float64)  # noqa: E731
    out = body.to(torch.float64)(global_orient=t(aa[0, 0]), body_pose=t(aa[0, 1:22]), betas=t(betas),
                                 transl=t(transl[0]), left_hand_pose=t(aa[0, 22:37]),
                                 right_hand_pose=t(aa[0, 37:52]))
    want = out.vertices[0].numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


def test_rig_from_export_rig_data_file(addon, tmp_path):
    """The file format of mimo.body.export_rig_data (what users make from licensed SMPL files)
    builds the same rig as the shipped open body, and its kind reaches the request."""
    pytest.importorskip("torch")
    body_mod = pytest.importorskip("mimo.body")
    from blender_addon.bl import rig_builder

    path = tmp_path / "exported.npz"
    body_mod.export_rig_data(body_mod.load_body("open"), path)
    assert bpy.ops.mimo.add_body_file(filepath=str(path)) == {"FINISHED"}
    a = bpy.context.active_object
    b = rig_builder.build_rig(rig_builder.OPEN_BODY)
    b.location = a.location
    assert rig_builder.rig_data(str(path)).kind == "open"
    va = _world_vertices_wire(bpy.data.objects[a["mimo_mesh"]])
    vb = _world_vertices_wire(bpy.data.objects[b["mimo_mesh"]])
    assert np.abs(va - vb).max() < 1e-6
    assert [x.name for x in a.data.bones] == [x.name for x in b.data.bones]


def _smplh_model_file(path, seed=0, V=400):
    """A small body written like a licensed SMPL-H ``.npz`` model file (v_template, f, shapedirs,
    posedirs, J_regressor, weights, kintree_table); posedirs zero so an armature can match it."""
    g = np.random.default_rng(seed)
    J = 52
    joints = np.zeros((J, 3))
    for j, p in enumerate(PARENTS[1:], start=1):
        joints[j] = joints[p] + g.normal(size=3) * 0.12
    owner = g.integers(0, J, size=V)
    v = joints[owner] + g.normal(size=(V, 3)) * 0.03
    w = np.zeros((V, J))
    w[np.arange(V), owner] = 1.0
    w[np.arange(V), g.integers(0, J, size=V)] += g.uniform(0, 1, size=V)
    w /= w.sum(1, keepdims=True)
    jreg = np.zeros((J, V))
    for j in range(J):
        near = np.argsort(np.linalg.norm(v - joints[j], axis=1))[:5]
        jreg[j, near] = g.uniform(0.5, 1.0, size=5)
    jreg /= jreg.sum(1, keepdims=True)
    kintree = np.array([[4294967295] + list(PARENTS[1:]), list(range(J))], dtype=np.int64)
    faces = np.array([(i, (i + 1) % V, (i + 7) % V) for i in range(V)], dtype=np.uint32)
    np.savez(path, v_template=v, f=faces, shapedirs=g.normal(size=(V, 3, 16)) * 0.02,
             posedirs=np.zeros((V, 3, 9 * (J - 1))), J_regressor=jreg, weights=w, kintree_table=kintree,
             hands_componentsl=np.eye(45), hands_componentsr=np.eye(45), hands_meanl=np.zeros(45),
             hands_meanr=np.zeros(45))
    return {"v": v, "jreg": jreg}


def test_smplh_model_file_rig_and_wire_params(addon, tmp_path):
    from blender_addon.bl import rig_builder

    path = tmp_path / "SMPLH_NEUTRAL.npz"
    ref = _smplh_model_file(path)
    assert bpy.ops.mimo.add_body_file(filepath=str(path)) == {"FINISHED"}
    rig = bpy.context.active_object
    data = rig_builder.rig_data(rig["mimo_rig_data"])
    assert data.kind == "smplh" and data.num_betas == 16 and data.joint_names == list(JOINT_NAMES)
    head = np.array([list(rig.data.bones[n].head_local) for n in JOINT_NAMES])
    assert np.abs(axes.points_blender_to_wire(head) - ref["jreg"] @ ref["v"]).max() < 1e-5
    aa, transl = _random_pose(np.random.default_rng(21), 1)
    rig_builder.keyframe_pose(rig, aa, transl, [1])
    back = rig_builder.read_pose(rig, bpy.context.scene, [1], world=False)
    assert back["body_pose"].shape == (1, 21, 3) and "left_hand_pose" in back
    assert np.abs(back["transl"] - transl).max() < 1e-5

    torch = pytest.importorskip("torch")
    body_mod = pytest.importorskip("mimo.body")
    body = body_mod.load_body(str(path)).to(torch.float64)  # the server's loader of the same file
    t = lambda a: torch.as_tensor(a[None], dtype=torch.float64)  # noqa: E731
    out = body(global_orient=t(aa[0, 0]), body_pose=t(aa[0, 1:22]), transl=t(transl[0]),
               left_hand_pose=t(aa[0, 22:37]), right_hand_pose=t(aa[0, 37:52]))
    bpy.context.scene.frame_set(1)
    got = _world_vertices_wire(bpy.data.objects[rig["mimo_mesh"]]) - axes.points_blender_to_wire(
        np.array(rig.location))
    assert np.abs(got - out.vertices[0].numpy()).max() < 1e-4


def test_shape_sliders_stay_in_the_body_range_and_animated_shapes_are_refused(addon):
    from blender_addon.bl import rig_builder
    from blender_addon.core.errors import AddonError

    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    data = rig_builder.rig_data(rig["mimo_rig_data"])
    lo, hi = data.shape_range[0]
    rig.mimo_shape[0] = hi + 2.0
    assert rig.mimo_shape[0] == pytest.approx(hi)  # limited to the range the body defines
    rig.mimo_shape[1] = lo - 5.0
    assert rig.mimo_shape[1] == pytest.approx(lo)
    scene = bpy.context.scene
    rig.keyframe_insert("mimo_shape", index=0, frame=1)
    action = rig.animation_data.action  # 4.4+ keeps F-curves in layers; 5.0 has only those
    fcurves = ([fc for lay in action.layers for st in lay.strips for bag in st.channelbags for fc in bag.fcurves]
               if getattr(action, "layers", None) else list(action.fcurves))
    (fc,) = [fc for fc in fcurves if fc.data_path == "mimo_shape"]
    fc.keyframe_points.insert(2, lo)
    scene.frame_set(1)
    for frames in ([1, 2], [2]):  # (the rig shows the shape of frame 1)
        with pytest.raises(AddonError, match="MIMO Body: the body shape is animated"):
            rig_builder.read_pose(rig, scene, frames)
    rig.animation_data_clear()
    assert rig_builder.read_pose(rig, scene, [1, 2])["betas"][0] == pytest.approx(hi)
