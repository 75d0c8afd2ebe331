"""Joint names and the kinematic tree of the SMPL family (SMPL, SMPL-H, SMPL-X).

Our open body uses the SMPL-H layout (52 joints): 22 body joints, then 15 finger joints per hand
(index, middle, pinky, ring, thumb; three segments each), left hand first.
"""
from __future__ import annotations

NUM_BODY_JOINTS = 21  # body_pose joints of SMPL-H / SMPL-X (pelvis excluded)
NUM_SMPL_BODY_JOINTS = 23  # body_pose joints of SMPL (adds left_hand, right_hand)
NUM_HAND_JOINTS = 15

BODY_JOINT_NAMES = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
]
BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]

FINGERS = ["index", "middle", "pinky", "ring", "thumb"]


def _hand_names(side: str) -> list[str]:
    return [f"{side}_{finger}{k}" for finger in FINGERS for k in (1, 2, 3)]


def _hand_parents(wrist: int, first: int) -> list[int]:
    parents = []
    for f in range(len(FINGERS)):
        base = first + 3 * f
        parents += [wrist, base, base + 1]
    return parents


SMPL_JOINT_NAMES = BODY_JOINT_NAMES + ["left_hand", "right_hand"]
SMPL_PARENTS = BODY_PARENTS + [20, 21]

SMPLH_JOINT_NAMES = BODY_JOINT_NAMES + _hand_names("left") + _hand_names("right")
SMPLH_PARENTS = BODY_PARENTS + _hand_parents(20, 22) + _hand_parents(21, 37)

SMPLX_JOINT_NAMES = (
    BODY_JOINT_NAMES + ["jaw", "left_eye_smplhf", "right_eye_smplhf"]
    + _hand_names("left") + _hand_names("right")
)
SMPLX_PARENTS = BODY_PARENTS + [15, 15, 15] + _hand_parents(20, 25) + _hand_parents(21, 40)

# Joints whose skinned vertices make up each hand (wrist included, as the SMPL part segmentation
# "leftHand" + "leftHandIndex1" that the official release removes).
HAND_JOINTS = {
    "left_hand": ["left_wrist", "left_hand"] + _hand_names("left"),
    "right_hand": ["right_wrist", "right_hand"] + _hand_names("right"),
}
