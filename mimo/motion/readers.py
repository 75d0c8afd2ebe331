"""Readers: AMASS ``.npz``, SMPL parameter files as 4D-Humans/HMR2 write them, BVH (retargeted).

All return clips in our world (docs/CONVENTIONS.md: metres, Y up). numpy only (no torch).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .bvh import read_bvh
from .clip import BodyTrack, CameraTrack, MotionClip
from .retarget import SMPLH_JOINTS, retarget
from .rotations import axis_angle_to_matrix, matrix_to_axis_angle

OPEN_BODY_NPZ = Path(__file__).resolve().parents[1] / "body" / "data" / "open_body.npz"
# AMASS worlds are Z up; ours is Y up: (x, y, z) -> (x, z, -y)
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
# OpenCV camera frame (y down, z forward) -> Y up, camera looking down -Z
OPENCV_TO_Y_UP = np.diag([1.0, -1.0, -1.0])


def open_body_rest_joints() -> np.ndarray:
    """Rest joints of the shipped open body, read with numpy only.

    Shapes:
        -> (52, 3)
    """
    with np.load(OPEN_BODY_NPZ, allow_pickle=False) as d:
        if list(d["joint_names"]) != SMPLH_JOINTS:
            raise ValueError("open_body.npz: unexpected joint order")
        return d["joint_template"].astype(np.float64)


def rotate_world(track: BodyTrack, Q: np.ndarray, pelvis: np.ndarray | None = None) -> BodyTrack:
    """Express a body track in a rotated world ``x' = Q x`` (in place; returns it).

    SMPL rotates about the rest pelvis joint ``J0`` (shape dependent), so the translation becomes
    ``Q (J0 + transl) - J0``. ``pelvis`` is that ``J0``; None means the origin (exact for the open
    body, whose rest pelvis is at the origin; for others the motion shifts by a constant).

    Shapes:
        Q (3, 3), pelvis (3,)
    """
    j0 = np.zeros(3) if pelvis is None else np.asarray(pelvis, dtype=np.float64)
    R = axis_angle_to_matrix(track.global_orient)
    track.global_orient = matrix_to_axis_angle(Q @ R)
    track.transl = (np.asarray(track.transl) + j0) @ Q.T - j0
    return track


def read_amass(path: str | os.PathLike, pelvis: np.ndarray | None = None) -> MotionClip:
    """An AMASS sequence (``poses`` (F, 156) SMPL-H or (F, 165) SMPL-X, ``trans`` (F, 3),
    ``betas``, ``mocap_framerate``/``mocap_frame_rate``, ``gender``) as a clip in our Y-up world.

    Shapes:
        -> MotionClip with one body: body_pose (F, 21, 3), hand poses (F, 15, 3)
    """
    wanted = ("poses", "trans", "betas", "mocap_framerate", "mocap_frame_rate")
    with np.load(path, allow_pickle=False) as d:  # other keys (gender, dmpls, ...) stay unread
        data = {k: d[k] for k in wanted if k in d.files}
    for key in ("poses", "trans"):
        if key not in data:
            raise ValueError(f"{key}: missing from AMASS file {os.fspath(path)}")
    poses = np.asarray(data["poses"], dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] not in (156, 165):
        raise ValueError(f"poses: expected shape (F, 156) (SMPL-H) or (F, 165) (SMPL-X), got "
                         f"{poses.shape}")
    F = poses.shape[0]
    fps_key = "mocap_framerate" if "mocap_framerate" in data else "mocap_frame_rate"
    if fps_key not in data:
        raise ValueError(f"mocap_framerate: missing from AMASS file {os.fspath(path)}")
    model = "smplh" if poses.shape[1] == 156 else "smplx"
    hands = poses[:, 66:156] if model == "smplh" else poses[:, 75:165]
    track = BodyTrack(global_orient=poses[:, :3], body_pose=poses[:, 3:66].reshape(F, 21, 3),
                      transl=np.asarray(data["trans"], dtype=np.float64),
                      betas=np.asarray(data.get("betas", np.zeros(0)), dtype=np.float64).ravel(),
                      left_hand_pose=hands[:, :45].reshape(F, 15, 3),
                      right_hand_pose=hands[:, 45:].reshape(F, 15, 3), model=model,
                      name=Path(path).stem)
    rotate_world(track.validate(), Z_UP_TO_Y_UP, pelvis)
    return MotionClip(fps=float(data[fps_key]), bodies=[track]).validate()


def _to_axis_angle(name: str, a: np.ndarray, joints: int) -> np.ndarray:
    """Accept (F, joints, 3, 3) rotation matrices or (F, joints, 3) axis-angle."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 4 and a.shape[1:] == (joints, 3, 3):
        return matrix_to_axis_angle(a)
    if a.ndim == 3 and a.shape[1:] == (joints, 3):
        return a
    if a.ndim == 3 and joints == 1 and a.shape[1:] == (3, 3):
        return matrix_to_axis_angle(a)[:, None]
    if a.ndim == 2 and a.shape[1] == joints * 3:
        return a.reshape(-1, joints, 3)
    raise ValueError(f"{name}: expected (F, {joints}, 3, 3) rotation matrices or (F, {joints}, 3) "
                     f"axis-angle, got {a.shape}")


def read_smpl_params(data: dict | str | os.PathLike, fps: float = 30.0, width: int | None = None,
                     height: int | None = None, pelvis: np.ndarray | None = None
                     ) -> tuple[MotionClip, CameraTrack | None]:
    """SMPL parameters as 4D-Humans / HMR2 predict them, one person over F frames.

    ``data`` (a dict, an ``.npz``, or a list of per-frame dicts with the same keys and no frame
    axis, as 4D-Humans' tracker stores them per person) has ``global_orient`` (F, 1, 3, 3), ``body_pose``
    (F, 23, 3, 3), ``betas`` (F, 10) — rotation matrices or axis-angle — and optionally
    ``pred_cam_t`` / ``cam_t`` / ``transl`` (F, 3): the body's translation in the OpenCV camera
    frame. The clip's world is that camera frame turned to Y up (x, -y, -z); with ``width`` and
    ``height`` the matching camera is returned too: at the origin looking down -Z with HMR2's
    focal length 5000 / 256 * max(W, H) and principal point (W/2, H/2).

    Shapes:
        -> MotionClip (body_pose (F, 23, 3), betas (10,) = mean over frames), CameraTrack or None
    """
    if isinstance(data, (list, tuple)):  # per-frame dicts (e.g. a 4D-Humans/PHALP track)
        data = {k: np.stack([np.asarray(f[k]) for f in data]) for k in data[0]}
    elif not isinstance(data, dict):
        with np.load(data, allow_pickle=False) as d:
            data = {k: d[k] for k in d.files}
    for key in ("global_orient", "body_pose"):
        if key not in data:
            raise ValueError(f"{key}: missing from SMPL parameters")
    go = _to_axis_angle("global_orient", data["global_orient"], 1)[:, 0]
    bp = _to_axis_angle("body_pose", data["body_pose"], 23)
    F = go.shape[0]
    t_key = next((k for k in ("pred_cam_t", "cam_t", "transl") if k in data), None)
    transl = np.zeros((F, 3)) if t_key is None else np.asarray(data[t_key], dtype=np.float64)
    betas = np.asarray(data.get("betas", np.zeros((F, 10))), dtype=np.float64)
    betas = betas.mean(0) if betas.ndim == 2 else betas
    track = BodyTrack(global_orient=go, body_pose=bp, transl=transl.reshape(F, 3), betas=betas,
                      model="smpl", name="hmr2").validate()
    rotate_world(track, OPENCV_TO_Y_UP, pelvis)
    clip = MotionClip(fps=fps, bodies=[track]).validate()
    camera = None
    if width is not None and height is not None:
        f = 5000.0 / 256.0 * max(width, height)
        K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
        camera = CameraTrack.static(K, OPENCV_TO_Y_UP, np.zeros(3), width, height, F, fps)
    return clip, camera


def read_bvh_clip(path: str | os.PathLike, target_rest_joints: np.ndarray | None = None,
                  bone_map: dict | str | None = None, world_to_smpl: np.ndarray | None = None,
                  fps: float | None = None) -> MotionClip:
    """A BVH file retargeted onto an SMPL-H-layout body (default: the open body's rest joints).

    Args:
        bone_map: preset name ("cmu_bvh", "mixamo", "rigify", "smpl"), a dict, or None (auto).
        world_to_smpl: rotation from the file's axes to ours; None for the usual Y-up BVH.
        fps: resample to this rate (None keeps the file's).

    Shapes:
        target_rest_joints (52, 3) -> MotionClip (body_pose (F, 21, 3), hand poses (F, 15, 3))
    """
    bvh = read_bvh(path)
    tgt = open_body_rest_joints() if target_rest_joints is None else target_rest_joints
    out = retarget(bvh.to_skeleton(), tgt, bone_map=bone_map, world_to_smpl=world_to_smpl)
    track = BodyTrack(global_orient=out["global_orient"], body_pose=out["body_pose"],
                      transl=out["transl"], left_hand_pose=out["left_hand_pose"],
                      right_hand_pose=out["right_hand_pose"], model="open", name=Path(path).stem)
    clip = MotionClip(fps=bvh.fps, bodies=[track]).validate()
    return clip.resample(fps) if fps is not None else clip
