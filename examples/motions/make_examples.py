"""Convert the DeepMimic humanoid motion-capture clips shipped in the PyPI ``pybullet`` wheel
into our clip format (``walk.npz``, ``dance.npz``), retargeted onto the open body.

    python examples/motions/make_examples.py PATH/TO/pybullet-3.2.7-...whl  [OUT_DIR]

The source skeleton is pybullet's ``pybullet_data/humanoid/humanoid.urdf`` (Y up, facing +X,
arms hanging down; pybullet loads it at ``globalScaling=0.25``, which gives metres). A motion
file has one row per frame: duration, root position (3), root orientation (w, x, y, z), then
chest, neck, right hip (quaternions), right knee (angle about Z), right ankle, right shoulder
(quaternions), right elbow (angle), and the same for the left side.
"""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from mimo.motion import BodyTrack, MotionClip, SourceSkeleton, retarget
from mimo.motion.readers import open_body_rest_joints
from mimo.motion.rotations import axis_angle_to_matrix, quaternion_to_matrix

URDF_SCALE = 0.25
# name, parent, offset from the parent joint in URDF units (humanoid.urdf joint origins)
SKELETON = [
    ("root", None, (0.0, 0.0, 0.0)),
    ("chest", "root", (0.0, 0.944604, 0.0)),
    ("neck", "chest", (0.0, 0.895576, 0.0)),
    ("right_hip", "root", (0.0, 0.0, 0.339548)),
    ("right_knee", "right_hip", (0.0, -1.686184, 0.0)),
    ("right_ankle", "right_knee", (0.0, -1.639480, 0.0)),
    ("right_shoulder", "chest", (-0.0962, 0.974, 0.73244)),
    ("right_elbow", "right_shoulder", (0.0, -1.099152, 0.0)),
    ("right_wrist", "right_elbow", (0.0, -1.035788, 0.0)),
    ("left_hip", "root", (0.0, 0.0, -0.339548)),
    ("left_knee", "left_hip", (0.0, -1.686184, 0.0)),
    ("left_ankle", "left_knee", (0.0, -1.639480, 0.0)),
    ("left_shoulder", "chest", (-0.0962, 0.974, -0.73244)),
    ("left_elbow", "left_shoulder", (0.0, -1.099152, 0.0)),
    ("left_wrist", "left_elbow", (0.0, -1.035788, 0.0)),
]
# columns of each joint in a frame row: quaternion (4) or 1-DOF angle about Z (1)
LAYOUT = [("chest", 4), ("neck", 4), ("right_hip", 4), ("right_knee", 1), ("right_ankle", 4),
          ("right_shoulder", 4), ("right_elbow", 1), ("left_hip", 4), ("left_knee", 1),
          ("left_ankle", 4), ("left_shoulder", 4), ("left_elbow", 1)]
BONE_MAP = {"pelvis": "root", "spine2": "chest", "neck": "neck"}
for _s in ("left", "right"):
    BONE_MAP.update({f"{_s}_hip": f"{_s}_hip", f"{_s}_knee": f"{_s}_knee",
                     f"{_s}_ankle": f"{_s}_ankle", f"{_s}_shoulder": f"{_s}_shoulder",
                     f"{_s}_elbow": f"{_s}_elbow", f"{_s}_wrist": f"{_s}_wrist"})
# the humanoid faces +X: turn the world by -90 degrees about Y so it faces +Z like SMPL
FACE_PLUS_Z = axis_angle_to_matrix(np.array([0.0, -np.pi / 2, 0.0]))
CLIPS = {"walk": "humanoid3d_walk.txt", "dance": "humanoid3d_dance_a.txt"}


def source_skeleton(frames: np.ndarray) -> SourceSkeleton:
    names = [n for n, _, _ in SKELETON]
    parents = [names.index(p) if p else -1 for _, p, _ in SKELETON]
    rest = np.zeros((len(names), 3))
    for i, (_, p, off) in enumerate(SKELETON):
        rest[i] = (rest[parents[i]] if p else 0.0) + URDF_SCALE * np.asarray(off)
    F = frames.shape[0]
    local = np.broadcast_to(np.eye(3), (F, len(names), 3, 3)).copy()
    local[:, 0] = quaternion_to_matrix(frames[:, 4:8])
    col = 8
    for name, width in LAYOUT:
        vals = frames[:, col:col + width]
        col += width
        i = names.index(name)
        local[:, i] = quaternion_to_matrix(vals) if width == 4 else axis_angle_to_matrix(
            np.concatenate([np.zeros((F, 2)), vals], axis=1))
    return SourceSkeleton(names, parents, rest, local, frames[:, 1:4])


def convert(motion_json: dict, name: str) -> MotionClip:
    frames = np.asarray(motion_json["Frames"], dtype=np.float64)
    out = retarget(source_skeleton(frames), open_body_rest_joints(), bone_map=BONE_MAP,
                   world_to_smpl=FACE_PLUS_Z)
    fps = 1.0 / float(np.median(frames[:-1, 0]))
    track = BodyTrack(global_orient=out["global_orient"], body_pose=out["body_pose"],
                      transl=out["transl"], model="open", name=name)
    fps = float(round(fps)) if abs(fps - round(fps)) < 0.01 else fps  # 0.033332 s -> 30 fps
    return MotionClip(fps=fps, bodies=[track]).validate()


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    src = Path(argv[0])
    out_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent
    for name, fname in CLIPS.items():
        member = f"pybullet_data/data/motions/{fname}"
        if src.is_dir():
            text = (src / member).read_text()
        else:
            with zipfile.ZipFile(src) as z:
                text = z.read(member).decode()
        clip = convert(json.loads(text), name)
        clip.save(out_dir / f"{name}.npz")
        print(f"{name}: {clip.num_frames} frames at {clip.fps} fps -> {out_dir / (name + '.npz')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
