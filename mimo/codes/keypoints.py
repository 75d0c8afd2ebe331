"""Body joints -> 2D keypoints in the OpenPose JSON layout (BODY_25 body, 21-point hands).

Each keypoint is a joint of the body model projected with the shot's OpenCV camera — ground truth,
not a detection. Keypoints the body model has no joint for (nose, eyes, ears, toes, heels,
fingertips) and joints outside the image or behind the camera get confidence 0 and (0, 0), as
OpenPose writes an undetected point; the others confidence 1. Coordinates follow OpenPose:
pixel ``i`` is centred on ``i`` (the cameras put its centre on ``i + 0.5``).

No face: ``face_keypoints_2d`` is always ``[]``. OpenPose's 70 face points are 68 facial
landmarks and the two pupils. The open body defines no landmarks (its 52 joints are SMPL-H's, with
no jaw or eyes, and nothing names points of its mesh as eyebrow, lip or jaw line). SMPL-X defines
51 landmarks, and 17 jaw-line points that follow the head's turn, as barycentric points on mesh
triangles (``lmk_faces_idx``/``lmk_bary_coords``, ``dynamic_lmk_*``), but those tables are inside
the licensed SMPLX_NEUTRAL model file, not in the ``smplx`` package (its code reads them from
that file; the vertex indices it ships are for nose, eyes, ears, toes, heels and fingertips), so
nothing here can be built or tested without that download; and jaw and expression are never
posed here (zero), so the mouth would not move.

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
         "face_keypoints_2d": [],
         "hand_left_keypoints_2d": _flat(hand_21("left"), j, K, R, t, width, height),
         "hand_right_keypoints_2d": _flat(hand_21("right"), j, K, R, t, width, height),
         "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
         "hand_right_keypoints_3d": []}
        for j in people]}
