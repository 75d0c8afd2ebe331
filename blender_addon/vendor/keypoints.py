"""Body joints -> 2D keypoints in the OpenPose JSON layout (BODY_25 body, 21-point hands).

Each keypoint is a joint of the body model projected with the shot's OpenCV camera — ground truth,
not a detection. Keypoints the body model has no joint for (nose, eyes, ears, toes, heels,
fingertips) and joints outside the image or behind the camera get confidence 0 and (0, 0), as
OpenPose writes an undetected point; the others confidence 1. Coordinates follow OpenPose:
pixel ``i`` is centred on ``i`` (the cameras put its centre on ``i + 0.5``).

Face: OpenPose's 70 face points (68 facial landmarks in the iBUG order, then the right and left
pupils) are written where the body model defines them: an SMPL-X model file with its landmark
tables (``mimo.body.face``; the joints dict then holds ``face_00`` .. ``face_69``). Jaw, eyes and
expression are never posed here (zero), so the mouth stays closed and the eyes look ahead. The
open body, SMPL and SMPL-H define no facial landmarks (their joints have no jaw or eyes and no
points of their meshes are named as brow, lip or jaw line): ``face_keypoints_2d`` is ``[]`` for
them, as OpenPose writes a run without face detection.

The Blender add-on vendors a byte-identical copy (``blender_addon/vendor/keypoints.py``); it may
import only the standard library and numpy.

Shapes: joints {name: (3,) world, SMPL axes}, K (3, 3), R (3, 3), t (3,)
"""
from __future__ import annotations

import numpy as np

#: OpenPose BODY_25 order -> body model joint names ("": the body has no such joint)
BODY_25 = ["", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
           "left_wrist", "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
           "left_ankle", "", "", "", "", "", "", "", "", "", ""]


#: OpenPose face order: iBUG points 0..67 (jaw line 0..16, brows, nose, eyes 36..47, mouth), pupils 68, 69
FACE_70 = [f"face_{i:02d}" for i in range(70)]


def hand_21(side: str) -> list[str]:
    """OpenPose hand order (wrist, then thumb, index, middle, ring, pinky from the palm out; the
    fourth point of each finger is its tip, which SMPL-H lacks)."""
    names = [f"{side}_wrist"]
    for finger in ("thumb", "index", "middle", "ring", "pinky"):
        names += [f"{side}_{finger}1", f"{side}_{finger}2", f"{side}_{finger}3", ""]
    return names


def _flat(names: list[str], joints: dict, K, R, t, width: int, height: int) -> list[float]:
    out: list[float] = []
    for n in names:
        p = joints.get(n) if n else None
        if p is not None:
            c = np.asarray(R, np.float64) @ np.asarray(p, np.float64) + np.asarray(t, np.float64)
            if c[2] > 1e-6:
                uvw = np.asarray(K, np.float64) @ c
                u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
                if 0.0 <= u < width and 0.0 <= v < height:
                    out += [float(u - 0.5), float(v - 0.5), 1.0]
                    continue
        out += [0.0, 0.0, 0.0]
    return out


def openpose_frame(people: list[dict], K, R, t, width: int, height: int) -> dict:
    """One frame's OpenPose JSON object for ``people`` (one joints dict per body)."""
    return {"version": 1.3, "canvas_width": int(width), "canvas_height": int(height), "people": [
        {"person_id": [-1],
         "pose_keypoints_2d": _flat(BODY_25, j, K, R, t, width, height),
         "face_keypoints_2d": (_flat(FACE_70, j, K, R, t, width, height)
                               if any(n in j for n in FACE_70) else []),
         "hand_left_keypoints_2d": _flat(hand_21("left"), j, K, R, t, width, height),
         "hand_right_keypoints_2d": _flat(hand_21("right"), j, K, R, t, width, height),
         "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
         "hand_right_keypoints_3d": []}
        for j in people]}
