"""The SMPL-H joint layout the rig uses: 22 body joints + 15 finger joints per hand, taken from the
library's one joint table (``mimo/body/joints.py``, vendored as ``vendor/joints.py``).

Local rotations of joint ``j`` are relative to its parent, in SMPL model axes (Y up, facing +Z,
+X = the body's left), with every joint's rest orientation the identity (T-pose).
"""
from __future__ import annotations

from ..vendor import joints as _j

BODY_JOINT_NAMES: tuple[str, ...] = tuple(_j.BODY_JOINT_NAMES)
BODY_PARENTS: tuple[int, ...] = tuple(_j.BODY_PARENTS)
JOINT_NAMES: tuple[str, ...] = tuple(_j.SMPLH_JOINT_NAMES)
PARENTS: tuple[int, ...] = tuple(_j.SMPLH_PARENTS)
NUM_BODY_JOINTS = _j.NUM_BODY_JOINTS   # body_pose joints (pelvis excluded)
NUM_HAND_JOINTS = _j.NUM_HAND_JOINTS
LEFT_HAND = slice(len(BODY_JOINT_NAMES), len(BODY_JOINT_NAMES) + NUM_HAND_JOINTS)
RIGHT_HAND = slice(LEFT_HAND.stop, LEFT_HAND.stop + NUM_HAND_JOINTS)
