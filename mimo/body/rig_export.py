"""Export a body model as a numpy-only ``.npz`` rig file for the Blender add-on (no torch there)."""
from __future__ import annotations

import json
import os

import numpy as np

from mimo.body.model import BodyModel

RIG_FORMAT_VERSION = 1


def export_rig_data(body: BodyModel, path: str | os.PathLike) -> None:
    """Write everything a rig builder needs to ``path`` (``np.savez_compressed``, no pickle).

    Keys (all plain numpy arrays; read with ``np.load(path, allow_pickle=False)``):

    - ``format_version`` () int32: 1.
    - ``kind`` () str: "open", "smpl", "smplh" or "smplx".
    - ``axes`` () str: "smpl_y_up" — positions are metres in SMPL axes (Y up, the body faces +Z,
      +X is the body's left). Blender (Z up) maps (x, y, z)_smpl -> (x, -z, y)_blender.
    - ``rest_vertices`` (V, 3) float32, ``faces`` (T, 3) int32: the zero-shape T-pose mesh.
    - ``joint_names`` (J,) str, ``parents`` (J,) int32 (-1 for the root): SMPL joint tree.
    - ``rest_joints`` (J, 3) float32: joint (bone head) positions of the zero shape.
    - ``skin_weights`` (V, J) float32: rows sum to 1; one vertex group per joint.
    - ``shapedirs`` (V, 3, K), ``joint_shapedirs`` (J, 3, K) float32, ``beta_names`` (K,) str:
      for shape sliders ``betas`` (K,), the rest mesh and joints are
      ``rest_vertices + shapedirs @ betas`` and ``rest_joints + joint_shapedirs @ betas``
      (``@`` over the last axis), exactly what the server's body model does.
    - ``vertex_set_names`` (S,) str and ``vertex_set_<name>`` (N,) int32: named vertex sets
      (at least "left_hand", "right_hand").
    - ``info`` () str: JSON with counts and the notes below.

    Pose-corrective blend shapes of SMPL-family files (``posedirs``) are not exported: a Blender
    armature cannot apply them, and the server adds them itself.

    Shapes:
        body: BodyModel with V vertices, T triangles, J joints, K betas -> file on disk
    """
    c = lambda t: t.detach().cpu().numpy()  # noqa: E731
    sets = {f"vertex_set_{k}": c(v).astype(np.int32) for k, v in body.vertex_sets.items()}
    info = {"vertices": body.num_vertices, "triangles": int(body.faces.shape[0]),
            "joints": body.num_joints, "betas": body.num_betas,
            "posedirs_omitted": body.posedirs is not None}
    np.savez_compressed(
        path,
        format_version=np.int32(RIG_FORMAT_VERSION),
        kind=np.asarray(body.kind),
        axes=np.asarray("smpl_y_up"),
        rest_vertices=c(body.rest_vertices).astype(np.float32),
        faces=c(body.faces).astype(np.int32),
        joint_names=np.asarray(body.joint_names),
        parents=np.asarray(body.parents, dtype=np.int32),
        rest_joints=c(body.rest_joints).astype(np.float32),
        skin_weights=c(body.skin_weights).astype(np.float32),
        shapedirs=c(body.shapedirs).astype(np.float32),
        joint_shapedirs=c(body.joint_shapedirs).astype(np.float32),
        beta_names=np.asarray(body.beta_names),
        vertex_set_names=np.asarray(sorted(body.vertex_sets)),
        info=np.asarray(json.dumps(info, sort_keys=True)),
        **sets,
    )
