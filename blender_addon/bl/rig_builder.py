"""Build the MIMO body rig (armature with SMPL-H joint names and hierarchy in a T-pose rest, and
the linear-blend-skinned mesh), reshape it, keyframe SMPL parameters onto it and read them back.

Bone heads sit exactly on the rest joints; every bone has roll 0 and points at a child joint, so
its rest frame ``B_j`` is generally not the identity — core.rig accounts for it.
"""
from __future__ import annotations

import os

import bpy
import numpy as np

from ..core import rig as rigmath
from ..core.axes import points_wire_to_blender
from ..core.body_data import RigData, load_rig_data
from ..core.errors import AddonError

ADDON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the built extension ships the open body in data/ (build.py copies it); a source checkout reads
# the library's own file
OPEN_BODY = next((p for p in (os.path.join(ADDON_DIR, "data", "open_body.npz"),
                              os.path.join(os.path.dirname(ADDON_DIR), "mimo", "body", "data", "open_body.npz"))
                  if os.path.exists(p)), os.path.join(ADDON_DIR, "data", "open_body.npz"))
_CACHE: dict[str, RigData] = {}
# which child a bone points at when it has several (SMPL-H names)
_PREFERRED_CHILD = {"pelvis": "spine1", "spine3": "neck", "left_wrist": "left_middle1",
                    "right_wrist": "right_middle1"}


OPEN_TOKEN = "<open body>"  # stored instead of the add-on's install path: blends stay portable


def rig_data(path: str) -> RigData:
    """The (cached) rig data of a file path, ``//``-relative path or :data:`OPEN_TOKEN`."""
    path = OPEN_BODY if path == OPEN_TOKEN else path
    path = bpy.path.abspath(path) if path.startswith("//") else path
    if path not in _CACHE:
        if not os.path.exists(path):
            raise AddonError(f"body data file not found: {path}")
        _CACHE[path] = load_rig_data(path)
    return _CACHE[path]


def _tails(data: RigData, joints_b: np.ndarray) -> np.ndarray:
    J = len(data.joint_names)
    children: dict[int, list[int]] = {j: [] for j in range(J)}
    for j, p in enumerate(data.parents):
        if p >= 0:
            children[int(p)].append(j)
    tails = np.empty_like(joints_b)
    for j in range(J):
        name = data.joint_names[j]
        kids = children[j]
        pick = [k for k in kids if data.joint_names[k] == _PREFERRED_CHILD.get(name)] or kids[:1]
        tail = joints_b[pick[0]] if pick else None
        if tail is None or np.linalg.norm(tail - joints_b[j]) < 1e-3:
            p = int(data.parents[j])
            d = joints_b[j] - joints_b[p] if p >= 0 else np.array([0.0, 0.0, 0.1])
            n = np.linalg.norm(d)
            d = d / n * max(0.03, 0.5 * n) if n > 1e-6 else np.array([0.0, 0.0, 0.05])
            tail = joints_b[j] + d
        tails[j] = tail
    return tails


def _set_edit_bones(arm_obj: bpy.types.Object, data: RigData, joints_b: np.ndarray, create: bool) -> None:
    view_layer = bpy.context.view_layer
    prev_active = view_layer.objects.active
    prev_mode = arm_obj.mode
    view_layer.objects.active = arm_obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        ebs = arm_obj.data.edit_bones
        tails = _tails(data, joints_b)
        for j, name in enumerate(data.joint_names):
            eb = ebs.new(name) if create else ebs[name]
            eb.head = joints_b[j].tolist()
            eb.tail = tails[j].tolist()
            eb.roll = 0.0
            eb.use_deform = True
        if create:
            for j, name in enumerate(data.joint_names):
                p = int(data.parents[j])
                if p >= 0:
                    ebs[name].parent = ebs[data.joint_names[p]]
                    ebs[name].use_connect = False
    finally:
        bpy.ops.object.mode_set(mode="OBJECT" if prev_mode == "EDIT" else prev_mode)
        view_layer.objects.active = prev_active


def build_rig(data_path: str = OPEN_BODY, name: str = "MIMO Body",
              collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """Create the armature + skinned mesh in ``collection`` (default: the scene's) and return the
    armature object. Rest pose: the body's T-pose, mean shape."""
    data = rig_data(data_path)
    collection = collection or bpy.context.scene.collection
    arm = bpy.data.armatures.new(name)
    arm_obj = bpy.data.objects.new(name, arm)
    collection.objects.link(arm_obj)
    same = os.path.exists(data_path) and os.path.exists(OPEN_BODY) and os.path.samefile(data_path, OPEN_BODY)
    arm_obj["mimo_rig_data"] = OPEN_TOKEN if same else data_path
    arm_obj["mimo_num_shapes"] = data.num_betas
    verts_w, joints_w = data.shaped(None)
    _set_edit_bones(arm_obj, data, points_wire_to_blender(joints_w), create=True)
    for pb in arm_obj.pose.bones:
        pb.rotation_mode = "QUATERNION"

    mesh = bpy.data.meshes.new(name + " Mesh")
    verts_b = points_wire_to_blender(verts_w)
    mesh.from_pydata(verts_b.tolist(), [], data.faces.tolist())
    mesh.validate()
    mesh_obj = bpy.data.objects.new(name + " Mesh", mesh)
    collection.objects.link(mesh_obj)
    mesh_obj.parent = arm_obj
    for j, jn in enumerate(data.joint_names):
        vg = mesh_obj.vertex_groups.new(name=jn)
        w = data.skin_weights[:, j]
        for i in np.nonzero(w > 1e-8)[0].tolist():
            vg.add([i], float(w[i]), "REPLACE")
    mod = mesh_obj.modifiers.new("MIMO Armature", "ARMATURE")
    mod.object = arm_obj
    mod.use_deform_preserve_volume = False
    mod.use_vertex_groups = True
    arm_obj["mimo_mesh"] = mesh_obj.name
    return arm_obj


def is_rig(obj: bpy.types.Object | None) -> bool:
    return obj is not None and obj.type == "ARMATURE" and "mimo_rig_data" in obj


def betas_of(arm_obj: bpy.types.Object) -> np.ndarray:
    """The rig's shape coefficients. Shapes: -> (K,)"""
    K = int(arm_obj.get("mimo_num_shapes", 0))
    return np.array(arm_obj.mimo_shape[:K], dtype=np.float64)


def apply_shape(arm_obj: bpy.types.Object) -> None:
    """Move the rest mesh and the rest joints to the rig's current shape sliders."""
    data = rig_data(arm_obj["mimo_rig_data"])
    verts_w, joints_w = data.shaped(betas_of(arm_obj) if data.num_betas else None)
    _set_edit_bones(arm_obj, data, points_wire_to_blender(joints_w), create=False)
    mesh_obj = bpy.data.objects.get(arm_obj.get("mimo_mesh", ""))
    if mesh_obj is not None:
        mesh_obj.data.vertices.foreach_set("co", points_wire_to_blender(verts_w).astype(np.float32).ravel())
        mesh_obj.data.update()


def bone_rest(arm_obj: bpy.types.Object, names: list[str]) -> np.ndarray:
    """Rotation part of each named bone's rest ``matrix_local``. Shapes: -> (J, 3, 3)."""
    bones = arm_obj.data.bones
    return np.array([[list(r) for r in bones[n].matrix_local.to_3x3()] for n in names])


def keyframe_pose(arm_obj: bpy.types.Object, axis_angle: np.ndarray, transl: np.ndarray,
                  frames: list[int]) -> None:
    """Keyframe SMPL local rotations and ``transl`` (wire axes) at scene ``frames``; joints are
    matched by name, so SMPL, SMPL-X and open rigs all take SMPL-H-ordered input.

    Shapes: axis_angle (F, 52, 3) SMPL-H order, transl (F, 3), len(frames) == F.
    """
    data = rig_data(arm_obj["mimo_rig_data"])
    names = data.joint_names
    F = len(frames)
    aa = np.asarray(axis_angle, dtype=np.float64)
    if aa.shape[0] != F:
        raise ValueError(f"axis_angle: expected {F} frames (one per keyframe), got {aa.shape[0]}")
    aa = rigmath.smplh_to_rig(aa, names)
    B = bone_rest(arm_obj, names)
    quats = rigmath.pose_to_quaternions(aa, B)
    loc = rigmath.transl_to_root_location(transl, B[0])
    pbs = [arm_obj.pose.bones[n] for n in names]
    for pb in pbs:
        pb.rotation_mode = "QUATERNION"
    for f, frame in enumerate(frames):
        for j, pb in enumerate(pbs):
            pb.rotation_quaternion = quats[f, j].tolist()
            pb.keyframe_insert("rotation_quaternion", frame=frame, group=pb.name)
        pbs[0].location = loc[f].tolist()
        pbs[0].keyframe_insert("location", frame=frame, group=pbs[0].name)


def _mat(m) -> list:
    return [list(r) for r in m]


def read_pose(arm_obj: bpy.types.Object, scene: bpy.types.Scene, frames: list[int],
              world: bool = True) -> dict[str, np.ndarray]:
    """Read the rig as Blender shows it — its *evaluated* pose (keyframes, drivers, IK, Copy
    Rotation, Child Of ...) — as SMPL-H parameters (wire axes) at scene ``frames``; any rotation
    mode. ``world``: fold the armature object's transform into ``global_orient``/``transl``.
    ``fit``: the :class:`core.evaluated.PoseFit` (residual and scale of each joint) and
    ``issue``: one line naming the bone the body cannot follow (scale, stretch, a moved non-root
    bone) with the residual in millimetres, or "".

    Shapes: -> global_orient (F, 3), body_pose (F, 21|23, 3), left/right_hand_pose (F, 15, 3)
               (rigs with fingers), transl (F, 3), betas (K,), axis_angle (F, 52, 3) SMPL-H order
    """
    from ..core.evaluated import describe_issue, fit_pose

    data = rig_data(arm_obj["mimo_rig_data"])
    names = data.joint_names
    B = bone_rest(arm_obj, names)
    F, J = len(frames), len(names)
    basis_q = np.empty((F, J, 4))
    basis_loc = np.empty((F, 3))
    pose = np.empty((F, J, 4, 4))
    mats = np.empty((F, 4, 4))
    keep = scene.frame_current
    pbs = [arm_obj.pose.bones[n] for n in names]
    rest = np.array([_mat(arm_obj.data.bones[n].matrix_local) for n in names])
    K = int(arm_obj.get("mimo_num_shapes", 0))
    shapes = np.empty((F, K))
    for f, frame in enumerate(frames):
        scene.frame_set(frame)
        shapes[f] = arm_obj.mimo_shape[:K]
        for j, pb in enumerate(pbs):
            basis_q[f, j] = list(pb.matrix_basis.to_quaternion())
            pose[f, j] = _mat(pb.matrix)
        basis_loc[f] = list(pbs[0].matrix_basis.translation)
        mats[f] = np.array(_mat(arm_obj.matrix_world))
    scene.frame_set(keep)
    # the rig's bones and mesh follow the shape set with the sliders, at no frame in particular:
    # a shape that differs between the frames sent and the current one is animated
    shapes = np.concatenate([shapes, np.asarray(arm_obj.mimo_shape[:K], np.float64)[None]])
    if K and np.ptp(shapes, axis=0).max() > 1e-6:
        raise AddonError(f"{arm_obj.name}: the body shape is animated, which the viewport does not "
                              "show and the body cannot follow: remove the Shape keyframes")
    fit = fit_pose(pose, rest, data.parents)
    # where the evaluated pose is the keyframed one (to float32 precision), keep the exact basis
    quats = fit.quaternions
    same = np.abs(np.sum(quats * basis_q, axis=-1)) > 1.0 - 1e-9
    quats = np.where(same[..., None], basis_q, quats)
    loc = fit.root_location
    loc = np.where(np.linalg.norm(loc - basis_loc, axis=-1, keepdims=True) < 1e-5, basis_loc, loc)
    aa = rigmath.quaternions_to_pose(quats, B)
    transl = rigmath.root_location_to_transl(loc, B[0])
    betas = betas_of(arm_obj)
    if world:
        _, joints_w = data.shaped(betas if data.num_betas else None)
        for f in range(F):
            scale = np.linalg.norm(mats[f][:3, :3], axis=0)
            if np.max(np.abs(scale - 1.0)) > 1e-4:  # said in the artist's words, with the frame
                said = ", ".join(f"{v:.3g}" for v in scale)
                raise AddonError(f"{arm_obj.name}: the rig object is scaled ({said} at frame {frames[f]}); "
                                      "a body cannot be: apply the scale (Ctrl+A)")
            go, tr = rigmath.apply_object_transform(aa[f:f + 1, 0], transl[f:f + 1], joints_w[0], mats[f])
            aa[f, 0], transl[f] = go[0], tr[0]
    out = rigmath.rig_to_params(aa, names, data.kind)
    out.update(transl=transl, betas=betas, axis_angle=out.pop("smplh"), fit=fit,
               issue=describe_issue(fit, names, list(frames), arm_obj.name))
    return out
