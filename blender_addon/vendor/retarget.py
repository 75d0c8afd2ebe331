"""Retarget any skeleton's motion onto the SMPL-H joint layout. Pure numpy (stdlib, numpy and
sibling modules only: the Blender add-on vendors this file and ``rotations.py`` byte-identically).

Method (world-space rotation transfer with rest-pose alignment):

1. Forward kinematics of the source gives, per frame, each bone's world rotation ``W_i`` and head
   position ``P_i``. Its rest-to-pose world delta is ``D_i = W_i @ Rest_i.T``, expressed in our
   world (Y up) through ``world_to_smpl`` (a rotation ``Q``: ``D -> Q D Q.T``, ``p -> Q p``).
2. Rest alignment per SMPL joint ``j`` mapped to source bone ``s``: ``C_j`` is the smallest
   rotation taking the target's rest bone direction (joint -> its main child) onto the source's
   rest bone direction (mapped bone -> mapped child). The pelvis uses the whole frame spanned by
   the hips (left - right) and the spine (up), so a source that faces elsewhere at rest keeps
   facing there. Joints without a mapped child reuse their parent's alignment.
3. The target joint's world rotation is ``M_j = D_s @ C_j``, so at every frame each target bone
   points where its source bone points (T-pose and A-pose sources alike). Unmapped joints follow
   their parent (identity local rotation); SMPL local rotations are ``M_parent.T @ M_j``.
4. Root translation: the target pelvis goes where the source pelvis is, scaled by the ratio of
   leg lengths (hip->knee->ankle, target / source), so units cancel (cm, inches, m) and feet
   stay on a floor at height 0: ``transl = scale * P_pelvis - rest_pelvis_target``.

Shapes:
    F frames, N source bones, J target joints (52, SMPL-H layout)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .rotations import align_vectors, frame_from_vectors, matrix_to_axis_angle

SIDES = (("left", "Left", "L", "l"), ("right", "Right", "R", "r"))
FINGERS = ("index", "middle", "pinky", "ring", "thumb")
BODY_JOINTS = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
]
HAND_JOINTS = {side: [f"{side}_{f}{k}" for f in FINGERS for k in (1, 2, 3)]
               for side in ("left", "right")}
SMPLH_JOINTS = BODY_JOINTS + HAND_JOINTS["left"] + HAND_JOINTS["right"]
MAIN_CHILD = {"spine3": "neck", "left_wrist": "left_middle1", "right_wrist": "right_middle1",
              "pelvis": "spine1"}


def _presets() -> dict[str, dict[str, list[str]]]:
    """Bone-name presets: SMPL joint -> candidate source bone names (first found wins)."""
    mixamo = {"pelvis": ["Hips"], "spine1": ["Spine"], "spine2": ["Spine1"],
              "spine3": ["Spine2"], "neck": ["Neck"], "head": ["Head"]}
    cmu = {"pelvis": ["Hips"], "spine1": ["LowerBack"], "spine2": ["Spine"],
           "spine3": ["Spine1"], "neck": ["Neck"], "head": ["Head"]}
    rigify = {"pelvis": ["DEF-spine", "spine"], "spine1": ["DEF-spine.001", "spine.001"],
              "spine2": ["DEF-spine.002", "spine.002"], "spine3": ["DEF-spine.003", "spine.003"],
              "neck": ["DEF-spine.004", "spine.004"], "head": ["DEF-spine.006", "spine.006"]}
    smpl = {j: [j] for j in SMPLH_JOINTS}
    smpl.update({"pelvis": ["pelvis", "Pelvis", "root"], "spine1": ["spine1", "Spine1"],
                 "spine2": ["spine2", "Spine2"], "spine3": ["spine3", "Spine3"],
                 "neck": ["neck", "Neck"], "head": ["head", "Head"]})
    for side, Side, S, _ in SIDES:
        for joint, mx, cm, rg, sm in (
                ("collar", "Shoulder", "Shoulder", "shoulder", "Collar"),
                ("shoulder", "Arm", "Arm", "upper_arm", "Shoulder"),
                ("elbow", "ForeArm", "ForeArm", "forearm", "Elbow"),
                ("wrist", "Hand", "Hand", "hand", "Wrist"),
                ("hip", "UpLeg", "UpLeg", "thigh", "Hip"),
                ("knee", "Leg", "Leg", "shin", "Knee"),
                ("ankle", "Foot", "Foot", "foot", "Ankle"),
                ("foot", "ToeBase", "ToeBase", "toe", "Foot")):
            key = f"{side}_{joint}"
            mixamo[key] = [f"{Side}{mx}"]
            cmu[key] = [f"{Side}{cm}"]
            rigify[key] = [f"DEF-{rg}.{S}", f"{rg}.{S}"]
            smpl[key] = [key, f"{S}_{sm}"]
        for finger in FINGERS:
            for k in (1, 2, 3):
                key = f"{side}_{finger}{k}"
                mixamo[key] = [f"{Side}Hand{finger.capitalize()}{k}"]
                rg = "thumb" if finger == "thumb" else f"f_{finger}"
                rigify[key] = [f"DEF-{rg}.0{k}.{S}", f"{rg}.0{k}.{S}"]
                smpl[key] = [key]
    return {"smpl": smpl, "mixamo": mixamo, "rigify": rigify, "cmu_bvh": cmu}


PRESETS = _presets()
_STRIP_PREFIXES = ("m_avg_", "f_avg_", "smpl_")


def normalize_name(name: str) -> str:
    """Bone name without a namespace (``mixamorig:Hips`` -> ``hips``) or SMPL FBX prefix,
    lower-cased, for matching."""
    n = name.rsplit(":", 1)[-1]
    for p in _STRIP_PREFIXES:
        if n.lower().startswith(p):
            n = n[len(p):]
    return n.lower()


def resolve_bone_map(preset: str | dict[str, list[str] | str], source_names: list[str]
                     ) -> dict[str, str]:
    """SMPL joint -> actual source bone name for the bones of ``source_names`` a preset names.

    Args:
        preset: a key of :data:`PRESETS` or a dict SMPL joint -> bone name (or candidates).
    """
    table = PRESETS[preset] if isinstance(preset, str) else preset
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    by_norm = {}
    for n in source_names:
        by_norm.setdefault(normalize_name(n), n)
    out = {}
    for joint, candidates in table.items():
        if joint not in SMPLH_JOINTS:
            raise ValueError(f"bone_map: {joint!r} is not an SMPL-H joint name")
        for c in [candidates] if isinstance(candidates, str) else candidates:
            hit = c if c in source_names else by_norm.get(normalize_name(c))
            if hit is not None:
                out[joint] = hit
                break
    return out


def detect_bone_map(source_names: list[str]) -> tuple[str, dict[str, str]]:
    """Pick the preset that names the most source bones; ValueError if none fits.

    Returns:
        (preset name, SMPL joint -> source bone)
    """
    best = max(PRESETS, key=lambda p: len(resolve_bone_map(p, source_names)))
    found = resolve_bone_map(best, source_names)
    core = ["pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_shoulder",
            "right_shoulder", "left_elbow", "right_elbow"]
    missing = [j for j in core if j not in found]
    if missing:
        raise ValueError(f"source_names: no bone-map preset fits this skeleton (best "
                         f"{best!r} lacks {missing}); pass bone_map explicitly")
    return best, found


@dataclasses.dataclass
class SourceSkeleton:
    """A source armature and its motion, in its own world axes.

    ``local_rotations`` are each bone's pose rotation in its own rest frame (Blender pose-bone
    and BVH convention); ``rest_rotations`` the rest frame of each bone in world (identity for
    BVH). FK: ``W_i = W_p Rest_p.T Rest_i L_i`` and ``P_i = P_p + W_p Rest_p.T (rest_i - rest_p)``.

    Shapes:
        names (N,), parents (N,) (-1 for roots; parents before children), rest_positions (N, 3),
        rest_rotations (N, 3, 3), local_rotations (F, N, 3, 3), root_positions (F, 3)
    """

    names: list[str]
    parents: list[int]
    rest_positions: np.ndarray
    local_rotations: np.ndarray
    root_positions: np.ndarray
    rest_rotations: np.ndarray | None = None

    def forward_kinematics(self) -> tuple[np.ndarray, np.ndarray]:
        """World rotations (F, N, 3, 3) and head positions (F, N, 3) of every bone."""
        N = len(self.names)
        F = self.local_rotations.shape[0]
        if self.local_rotations.shape != (F, N, 3, 3):
            raise ValueError(f"local_rotations: expected shape (F, {N}, 3, 3), got "
                             f"{self.local_rotations.shape}")
        rest_rot = np.broadcast_to(np.eye(3), (N, 3, 3)) if self.rest_rotations is None \
            else np.asarray(self.rest_rotations, dtype=np.float64)
        rest_pos = np.asarray(self.rest_positions, dtype=np.float64)
        W = np.empty((F, N, 3, 3))
        P = np.empty((F, N, 3))
        for i, p in enumerate(self.parents):
            if p >= i:
                raise ValueError(f"parents: bone {i} has parent {p}; expected parents first")
            if p < 0:
                W[:, i] = rest_rot[i] @ self.local_rotations[:, i]
                P[:, i] = self.root_positions
                continue
            rel = rest_rot[p].T @ rest_rot[i]
            W[:, i] = W[:, p] @ rel @ self.local_rotations[:, i]
            P[:, i] = P[:, p] + W[:, p] @ (rest_rot[p].T @ (rest_pos[i] - rest_pos[p]))
        return W, P


def retarget(source: SourceSkeleton, target_rest_joints: np.ndarray,
             bone_map: dict[str, str] | str | None = None,
             world_to_smpl: np.ndarray | None = None, scale: float | None = None) -> dict:
    """Retarget ``source`` onto an SMPL-H-layout body whose rest joints are given.

    Args:
        source: skeleton and motion (any units).
        target_rest_joints: rest joint positions of the target body (SMPL-H order, metres),
            e.g. ``rest_joints`` of the open body or of a rig file; its pelvis is ``[0]``.
        bone_map: SMPL joint -> source bone name, a preset name, or None (auto-detect).
        world_to_smpl: rotation from the source world axes into ours (Y up); None = identity
            (a Y-up source such as BVH). For Blender's Z-up world use
            ``[[1, 0, 0], [0, 0, 1], [0, -1, 0]]``.
        scale: metres per source unit for translations; None = leg-length ratio.

    Returns:
        dict with global_orient (F, 3), body_pose (F, 21, 3), left_hand_pose (F, 15, 3),
        right_hand_pose (F, 15, 3), transl (F, 3), scale (float), bone_map (dict),
        preset (str or None).

    Shapes:
        target_rest_joints (52, 3) -> see Returns
    """
    tgt = np.asarray(target_rest_joints, dtype=np.float64)
    if tgt.shape != (len(SMPLH_JOINTS), 3) or not np.all(np.isfinite(tgt)):
        raise ValueError(f"target_rest_joints: expected finite shape ({len(SMPLH_JOINTS)}, 3), "
                         f"got {tgt.shape}")
    names = list(source.names)
    preset = None
    if bone_map is None:
        preset, bmap = detect_bone_map(names)
    elif isinstance(bone_map, str):
        preset, bmap = bone_map, resolve_bone_map(bone_map, names)
    else:
        bmap = dict(bone_map)
        unknown = [b for b in bmap.values() if b not in names]
        if unknown:
            raise ValueError(f"bone_map: source bones {unknown} are not in the skeleton")
    if "pelvis" not in bmap:
        raise ValueError("bone_map: expected a source bone for 'pelvis'")
    Q = np.eye(3) if world_to_smpl is None else np.asarray(world_to_smpl, dtype=np.float64)
    if Q.shape != (3, 3) or not np.allclose(Q @ Q.T, np.eye(3), atol=1e-6):
        raise ValueError("world_to_smpl: expected a 3x3 rotation matrix")

    W, P = source.forward_kinematics()
    F = W.shape[0]
    idx = {n: i for i, n in enumerate(names)}
    rest_rot = np.broadcast_to(np.eye(3), (len(names), 3, 3)) if source.rest_rotations is None \
        else np.asarray(source.rest_rotations, dtype=np.float64)
    rest_pos = np.asarray(source.rest_positions, dtype=np.float64) @ Q.T
    src = {j: idx[b] for j, b in bmap.items()}
    tj = {n: i for i, n in enumerate(SMPLH_JOINTS)}
    parents = _smplh_parents()

    # 2. rest alignment
    C = {}
    for j, name in enumerate(SMPLH_JOINTS):
        if name == "pelvis":
            C[name] = _pelvis_alignment(src, rest_pos, tgt, tj)
            continue
        child = MAIN_CHILD.get(name) or next(
            (c for c in SMPLH_JOINTS if parents[tj[c]] == j), None)
        if name in src and child in src:
            C[name] = align_vectors(tgt[tj[child]] - tgt[j], rest_pos[src[child]] - rest_pos[src[name]])
        else:
            C[name] = C[SMPLH_JOINTS[parents[j]]]

    # 3. world rotations of the target joints, then local
    M = np.empty((F, len(SMPLH_JOINTS), 3, 3))
    for j, name in enumerate(SMPLH_JOINTS):
        if name in src:
            s = src[name]
            D = Q @ W[:, s] @ rest_rot[s].T @ Q.T
            M[:, j] = D @ C[name]
        else:
            M[:, j] = M[:, parents[j]] if parents[j] >= 0 else C[name]
    local = np.empty_like(M)
    local[:, 0] = M[:, 0]
    for j in range(1, len(SMPLH_JOINTS)):
        local[:, j] = np.swapaxes(M[:, parents[j]], -1, -2) @ M[:, j]
    aa = matrix_to_axis_angle(local)

    # 4. translation
    if scale is None:
        scale = _leg_scale(src, rest_pos, tgt, tj)
    pelvis = P[:, src["pelvis"]] @ Q.T
    return {
        "global_orient": aa[:, 0], "body_pose": aa[:, 1:22],
        "left_hand_pose": aa[:, 22:37], "right_hand_pose": aa[:, 37:52],
        "transl": scale * pelvis - tgt[0], "scale": float(scale), "bone_map": bmap,
        "preset": preset,
    }


def _smplh_parents() -> list[int]:
    body = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
    hands = []
    for wrist, first in ((20, 22), (21, 37)):
        for f in range(5):
            hands += [wrist, first + 3 * f, first + 3 * f + 1]
    return body + hands


def _pelvis_alignment(src, rest_pos, tgt, tj) -> np.ndarray:
    if not all(k in src for k in ("left_hip", "right_hip")):
        return np.eye(3)
    up_name = next((k for k in ("spine1", "spine2", "spine3", "neck") if k in src), None)
    if up_name is None:
        return np.eye(3)
    f_src = frame_from_vectors(rest_pos[src["left_hip"]] - rest_pos[src["right_hip"]],
                               rest_pos[src[up_name]] - rest_pos[src["pelvis"]])
    f_tgt = frame_from_vectors(tgt[tj["left_hip"]] - tgt[tj["right_hip"]],
                               tgt[tj[up_name]] - tgt[tj["pelvis"]])
    return f_src @ f_tgt.T


def _leg_scale(src, rest_pos, tgt, tj) -> float:
    ratios = []
    for side in ("left", "right"):
        chain = [f"{side}_hip", f"{side}_knee", f"{side}_ankle"]
        if all(c in src for c in chain):
            s = sum(np.linalg.norm(rest_pos[src[b]] - rest_pos[src[a]])
                    for a, b in zip(chain, chain[1:]))
            t = sum(np.linalg.norm(tgt[tj[b]] - tgt[tj[a]]) for a, b in zip(chain, chain[1:]))
            if s > 0:
                ratios.append(t / s)
    return float(np.mean(ratios)) if ratios else 1.0
