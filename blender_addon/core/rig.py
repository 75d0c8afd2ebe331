"""Rig read-back math: SMPL local rotations <-> Blender pose-bone quaternions, root translation,
and the armature object's own transform. Pure numpy; the bpy layer passes bone rest matrices in.

A pose bone's quaternion ``Q_j`` acts in the bone's rest frame ``B_j`` (the 3x3 part of
``bone.matrix_local``, armature space). With every SMPL rest orientation the identity, the SMPL
local rotation of joint ``j`` in wire axes is ``R_j = C B_j Q_j B_j^T C^T`` where ``C`` is
:data:`axes.BLENDER_TO_WIRE` (armature space is Blender's Z-up world frame of the object).
The root bone's ``location`` ``L`` (bone frame) moves the pelvis by ``C B_0 L`` on the wire.

Shapes:
    bone_rest      (J, 3, 3)   rotation part of each bone's ``matrix_local``
    axis_angle     (F, J, 3)   SMPL local rotations (wire axes), J = all rig joints
    quaternions    (F, J, 4)   pose-bone ``rotation_quaternion`` (w, x, y, z)
    transl         (F, 3)      SMPL ``transl`` (wire)
    root_location  (F, 3)      pose-bone ``location`` of the root bone (bone frame)
"""
from __future__ import annotations

import numpy as np

from ..vendor import rotations as rot
from .axes import BLENDER_TO_WIRE as C
from .smplh import BODY_JOINT_NAMES, JOINT_NAMES, LEFT_HAND, NUM_BODY_JOINTS, RIGHT_HAND


def _rest(bone_rest: np.ndarray, J: int) -> np.ndarray:
    b = np.asarray(bone_rest, dtype=np.float64)
    if b.shape != (J, 3, 3):
        raise ValueError(f"bone_rest: expected shape ({J}, 3, 3), got {b.shape}")
    return b


def pose_to_quaternions(axis_angle: np.ndarray, bone_rest: np.ndarray) -> np.ndarray:
    """SMPL local rotations -> pose-bone quaternions, sign-continuous over frames.

    Shapes: axis_angle (F, J, 3), bone_rest (J, 3, 3) -> (F, J, 4)
    """
    aa = np.asarray(axis_angle, dtype=np.float64)
    if aa.ndim != 3 or aa.shape[-1] != 3:
        raise ValueError(f"axis_angle: expected shape (F, J, 3), got {aa.shape}")
    B = _rest(bone_rest, aa.shape[1])
    R = rot.axis_angle_to_matrix(aa)
    Bt = np.swapaxes(B, -1, -2)
    Q = Bt @ C.T @ R @ C @ B
    return make_continuous(rot.matrix_to_quaternion(Q))


def quaternions_to_pose(quaternions: np.ndarray, bone_rest: np.ndarray) -> np.ndarray:
    """Pose-bone quaternions -> SMPL local rotations (inverse of :func:`pose_to_quaternions`).

    Shapes: quaternions (F, J, 4), bone_rest (J, 3, 3) -> axis_angle (F, J, 3)
    """
    q = np.asarray(quaternions, dtype=np.float64)
    if q.ndim != 3 or q.shape[-1] != 4:
        raise ValueError(f"quaternions: expected shape (F, J, 4), got {q.shape}")
    B = _rest(bone_rest, q.shape[1])
    Q = rot.quaternion_to_matrix(q)
    R = C @ B @ Q @ np.swapaxes(B, -1, -2) @ C.T
    return rot.matrix_to_axis_angle(R)


def make_continuous(quaternions: np.ndarray) -> np.ndarray:
    """Flip signs so consecutive frames' quaternions have a positive dot product (keyframe
    interpolation then takes the short way). Shapes: (F, J, 4) -> (F, J, 4)."""
    q = np.array(quaternions, dtype=np.float64)
    for f in range(1, q.shape[0]):
        flip = np.sum(q[f] * q[f - 1], axis=-1) < 0
        q[f, flip] *= -1.0
    return q


def transl_to_root_location(transl: np.ndarray, root_rest: np.ndarray) -> np.ndarray:
    """SMPL ``transl`` (wire) -> the root pose bone's ``location``. Shapes: (F, 3), (3, 3) -> (F, 3)."""
    B0 = np.asarray(root_rest, dtype=np.float64)
    return np.asarray(transl, dtype=np.float64) @ (B0.T @ C.T).T


def root_location_to_transl(location: np.ndarray, root_rest: np.ndarray) -> np.ndarray:
    """Inverse of :func:`transl_to_root_location`. Shapes: (F, 3), (3, 3) -> (F, 3)."""
    B0 = np.asarray(root_rest, dtype=np.float64)
    return np.asarray(location, dtype=np.float64) @ (C @ B0).T


def apply_object_transform(global_orient: np.ndarray, transl: np.ndarray, pelvis_rest: np.ndarray,
                           object_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold the armature object's world transform (rotation + translation, Blender world) into
    ``global_orient`` and ``transl`` so the body lands where Blender shows it.

    SMPL places a vertex at ``R_g (v - J0) + J0 + transl``; the object maps armature space ``a``
    to ``Ro a + to``. Non-uniform or non-unit scale is refused (SMPL bodies have no scale).

    Shapes: global_orient (F, 3), transl (F, 3), pelvis_rest (3,) wire, object_matrix (4, 4)
            -> global_orient (F, 3), transl (F, 3)
    """
    M = np.asarray(object_matrix, dtype=np.float64)
    if M.shape != (4, 4):
        raise ValueError(f"object_matrix: expected shape (4, 4), got {M.shape}")
    scale = np.linalg.norm(M[:3, :3], axis=0)
    if np.max(np.abs(scale - 1.0)) > 1e-4:
        raise ValueError(f"object_matrix: the rig object must have scale 1, got {scale.round(4).tolist()} "
                         "(apply the scale with Ctrl+A)")
    Rw = C @ M[:3, :3] @ C.T
    tw = C @ M[:3, 3]
    J0 = np.asarray(pelvis_rest, dtype=np.float64)
    go = rot.matrix_to_axis_angle(Rw @ rot.axis_angle_to_matrix(global_orient))
    tr = (J0 + np.asarray(transl, dtype=np.float64)) @ Rw.T + tw - J0
    return go, tr


def split_smplh(axis_angle: np.ndarray) -> dict[str, np.ndarray]:
    """All-joint rotations of the 52-joint rig -> SMPL-H fields.

    Shapes: axis_angle (F, 52, 3) -> global_orient (F, 3), body_pose (F, 21, 3),
            left_hand_pose (F, 15, 3), right_hand_pose (F, 15, 3)
    """
    aa = np.asarray(axis_angle, dtype=np.float64)
    if aa.ndim != 3 or aa.shape[1:] != (52, 3):
        raise ValueError(f"axis_angle: expected shape (F, 52, 3), got {aa.shape}")
    return {
        "global_orient": aa[:, 0],
        "body_pose": aa[:, 1:1 + NUM_BODY_JOINTS],
        "left_hand_pose": aa[:, LEFT_HAND],
        "right_hand_pose": aa[:, RIGHT_HAND],
    }


def join_smplh(global_orient: np.ndarray, body_pose: np.ndarray, left_hand_pose: np.ndarray | None = None,
               right_hand_pose: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`split_smplh`; missing hands are the flat hand (zeros). ``body_pose`` with
    23 joints (plain SMPL) keeps its first 21 (SMPL's hand joints have no SMPL-H counterpart).

    Shapes: global_orient (F, 3), body_pose (F, 21|23, 3), hands (F, 15, 3) -> (F, 52, 3)
    """
    go = np.asarray(global_orient, dtype=np.float64)
    bp = np.asarray(body_pose, dtype=np.float64)
    if go.ndim != 2 or go.shape[1] != 3:
        raise ValueError(f"global_orient: expected shape (F, 3), got {go.shape}")
    F = go.shape[0]
    if bp.shape not in ((F, 21, 3), (F, 23, 3)):
        raise ValueError(f"body_pose: expected shape ({F}, 21, 3) or ({F}, 23, 3), got {bp.shape}")
    out = np.zeros((F, 52, 3))
    out[:, 0] = go
    out[:, 1:22] = bp[:, :21]
    for name, hand, sl in (("left_hand_pose", left_hand_pose, LEFT_HAND),
                           ("right_hand_pose", right_hand_pose, RIGHT_HAND)):
        if hand is not None:
            h = np.asarray(hand, dtype=np.float64)
            if h.shape != (F, 15, 3):
                raise ValueError(f"{name}: expected shape ({F}, 15, 3), got {h.shape}")
            out[:, sl] = h
    return out


def smplh_to_rig(axis_angle: np.ndarray, rig_names: list[str]) -> np.ndarray:
    """SMPL-H-ordered rotations -> the rig's joint order, by name (SMPL, SMPL-H, SMPL-X and open
    rigs share names); rig joints SMPL-H lacks (jaw, eyes, SMPL's hand joints) stay identity.

    Shapes: axis_angle (F, 52, 3) -> (F, J_rig, 3)
    """
    aa = np.asarray(axis_angle, dtype=np.float64)
    if aa.ndim != 3 or aa.shape[1:] != (len(JOINT_NAMES), 3):
        raise ValueError(f"axis_angle: expected shape (F, {len(JOINT_NAMES)}, 3), got {aa.shape}")
    pos = {n: i for i, n in enumerate(JOINT_NAMES)}
    out = np.zeros((aa.shape[0], len(rig_names), 3))
    for j, n in enumerate(rig_names):
        if n in pos:
            out[:, j] = aa[:, pos[n]]
    return out


def rig_to_params(axis_angle: np.ndarray, rig_names: list[str], kind: str) -> dict[str, np.ndarray]:
    """Rig-ordered rotations -> the wire's SMPL fields for body model ``kind``, by joint name.

    Shapes: axis_angle (F, J_rig, 3) -> global_orient (F, 3), body_pose (F, 21|23, 3),
            left/right_hand_pose (F, 15, 3) when the rig has fingers, smplh (F, 52, 3)
    """
    aa = np.asarray(axis_angle, dtype=np.float64)
    pos = {n: i for i, n in enumerate(rig_names)}
    body_names = list(BODY_JOINT_NAMES[1:]) + (["left_hand", "right_hand"] if kind == "smpl" else [])
    missing = [n for n in ["pelvis", *body_names] if n not in pos]
    if missing:
        raise ValueError(f"rig_names: the rig lacks joints {missing[:4]} of body model {kind!r}")
    out = {"global_orient": aa[:, pos["pelvis"]], "body_pose": aa[:, [pos[n] for n in body_names]]}
    for side, sl in (("left", LEFT_HAND), ("right", RIGHT_HAND)):
        names = JOINT_NAMES[sl]
        if all(n in pos for n in names):
            out[f"{side}_hand_pose"] = aa[:, [pos[n] for n in names]]
    smplh = np.zeros((aa.shape[0], len(JOINT_NAMES), 3))
    for i, n in enumerate(JOINT_NAMES):
        if n in pos:
            smplh[:, i] = aa[:, pos[n]]
    out["smplh"] = smplh
    return out
