"""The SMPL-H joint layout the rig uses: 22 body joints + 15 finger joints per hand.

Local rotations of joint ``j`` are relative to its parent, in SMPL model axes (Y up, facing +Z,
+X = the body's left), with every joint's rest orientation the identity (T-pose).
"""
from __future__ import annotations

BODY_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)
BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")


def _hand(side: str, wrist: int, first: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    names, parents = [], []
    for f, finger in enumerate(_FINGERS):
        for k in range(3):
            names.append(f"{side}_{finger}{k + 1}")
            parents.append(wrist if k == 0 else first + 3 * f + k - 1)
    return tuple(names), tuple(parents)


_LEFT_NAMES, _LEFT_PARENTS = _hand("left", 20, 22)
_RIGHT_NAMES, _RIGHT_PARENTS = _hand("right", 21, 37)

JOINT_NAMES: tuple[str, ...] = BODY_JOINT_NAMES + _LEFT_NAMES + _RIGHT_NAMES
PARENTS: tuple[int, ...] = BODY_PARENTS + _LEFT_PARENTS + _RIGHT_PARENTS
NUM_BODY_JOINTS = 21   # body_pose joints (pelvis excluded)
NUM_HAND_JOINTS = 15
LEFT_HAND = slice(22, 37)
RIGHT_HAND = slice(37, 52)
