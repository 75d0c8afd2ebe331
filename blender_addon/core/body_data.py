"""The body data the rig builder needs, read from the ``.npz`` that ``mimo.body.export_rig_data``
writes (the add-on ships the open body's file in ``data/``).

Keys (wire / SMPL axes, metres):
    joint_names (J,) str, parents (J,) int (-1 for the root), rest_joints (J, 3),
    rest_vertices (V, 3), faces (T, 3) int, skin_weights (V, J),
    optional shape space: shapedirs (V, 3, K), joint_shapedirs (J, 3, K), shape_names (K,) str,
    optional shape_range (K, 2) slider limits, kind () str (default "open").
The open body's own file (``mimo/body/data/open_body.npz``: ``v_template``, ``joint_template``,
``weights``, ``beta_names``) is read too.

Shapes: as listed; ``betas`` (K,).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class RigData:
    joint_names: list[str]
    parents: np.ndarray
    rest_joints: np.ndarray
    rest_vertices: np.ndarray
    faces: np.ndarray
    skin_weights: np.ndarray
    shapedirs: np.ndarray
    joint_shapedirs: np.ndarray
    shape_names: list[str]
    shape_range: np.ndarray
    kind: str = "open"   # body model on the wire: "open", "smpl", "smplh" or "smplx"

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])

    def shaped(self, betas: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Rest vertices and joints for shape coefficients ``betas`` (K,) (None: the mean shape).

        Shapes: betas (K,) -> vertices (V, 3), joints (J, 3)
        """
        if betas is None or self.num_betas == 0:
            return self.rest_vertices.copy(), self.rest_joints.copy()
        b = np.asarray(betas, dtype=np.float64)
        if b.shape != (self.num_betas,):
            raise ValueError(f"betas: expected shape ({self.num_betas},), got {b.shape}")
        return self.rest_vertices + self.shapedirs @ b, self.rest_joints + self.joint_shapedirs @ b

    def validate(self) -> None:
        J = len(self.joint_names)
        V = self.rest_vertices.shape[0]
        checks = [("parents", self.parents, (J,)), ("rest_joints", self.rest_joints, (J, 3)),
                  ("rest_vertices", self.rest_vertices, (V, 3)), ("skin_weights", self.skin_weights, (V, J)),
                  ("shapedirs", self.shapedirs, (V, 3, self.num_betas)),
                  ("joint_shapedirs", self.joint_shapedirs, (J, 3, self.num_betas))]
        for name, a, shape in checks:
            if a.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or self.faces.max(initial=0) >= V:
            raise ValueError(f"faces: expected (T, 3) indices < {V}, got shape {self.faces.shape}")
        for j, p in enumerate(self.parents):
            if not (p == -1 and j == 0 or 0 <= p < j):
                raise ValueError(f"parents: joint {j} has parent {p}; expected a parent listed before it")


#: the key names of ``mimo/body/data/open_body.npz`` (BodyModel's constructor) -> ours
ALIASES = {"v_template": "rest_vertices", "joint_template": "rest_joints", "weights": "skin_weights",
           "beta_names": "shape_names"}


#: SMPL-family joint names by joint count (model files carry no names): the library's joint tables
def _family_names(J: int) -> tuple[str, list[str]] | None:
    from ..vendor import joints

    for kind, names in (("smpl", joints.SMPL_JOINT_NAMES), ("smplh", joints.SMPLH_JOINT_NAMES),
                        ("smplx", joints.SMPLX_JOINT_NAMES)):
        if J == len(names):
            return kind, list(names)
    return None


def _from_model_file(path: str, z) -> dict:
    """A licensed SMPL-H / SMPL-X (or converted SMPL) ``.npz`` model file as rig arrays: rest
    joints from ``J_regressor``, skinning ``weights``, ``shapedirs`` (SMPL-X: the first 10 shape
    directions, not expressions). Pose correctives (``posedirs``) cannot live in an armature;
    the server applies them, so Blender's mesh differs from the server's by them only."""
    J = int(z["kintree_table"].shape[1])
    named = _family_names(J)
    if named is None:
        raise ValueError(f"path: {path} has {J} joints; expected 24 (SMPL), 52 (SMPL-H) or 55 (SMPL-X)")
    kind, names = named
    v = z["v_template"].astype(np.float64)
    try:
        jreg = z["J_regressor"].astype(np.float64)
    except ValueError:  # a pickled (sparse) regressor: not loaded inside Blender
        raise ValueError(f"J_regressor: stored as a pickled object in {path}; export the model with "
                         "mimo.body.export_rig_data") from None
    K = min(z["shapedirs"].shape[2], 10 if kind == "smplx" else 16)
    sd = z["shapedirs"][:, :, :K].astype(np.float64)
    parents = z["kintree_table"][0].astype(np.int64)
    parents[0] = -1
    return {"joint_names": np.array(names), "parents": parents, "rest_vertices": v,
            "rest_joints": jreg @ v, "faces": z["f"].astype(np.int64), "skin_weights": z["weights"],
            "shapedirs": sd, "joint_shapedirs": np.einsum("jv,vck->jck", jreg, sd),
            "shape_range": np.tile([-3.0, 3.0], (K, 1)), "kind": np.array(kind)}


def load_rig_data(path: str) -> RigData:
    """Read and validate rig data: the ``.npz`` of ``mimo.body.export_rig_data`` (our key names),
    the open body's own file (``v_template``, ``joint_template``, ``weights``, ``beta_names``),
    or a licensed SMPL-family ``.npz`` model file (``kintree_table``, ``J_regressor``, ...).
    Shapes: see the module docstring."""
    if path.lower().endswith(".pkl"):
        raise ValueError(f"path: {path} is a pickled model; export it with mimo.body.export_rig_data "
                         "(pickles are not loaded inside Blender)")
    with np.load(path, allow_pickle=False) as z:
        if "kintree_table" in z.files:
            arrays = _from_model_file(path, z)
        else:
            arrays = None
    if arrays is not None:
        return _finish(path, arrays)
    with np.load(path, allow_pickle=False) as z:
        arrays = {ALIASES.get(k, k): z[k] for k in z.files if k in KEYS or k in ALIASES}
    return _finish(path, arrays)


KEYS = {"joint_names", "parents", "rest_joints", "rest_vertices", "faces", "skin_weights", "shapedirs",
        "joint_shapedirs", "shape_names", "shape_range", "kind"}


def _finish(path: str, arrays: dict) -> RigData:
    need = {"joint_names", "parents", "rest_joints", "rest_vertices", "faces", "skin_weights"}
    if not need <= arrays.keys():
        raise ValueError(f"path: {path} lacks keys {sorted(need - arrays.keys())}")
    V, J = arrays["skin_weights"].shape
    K = arrays["shapedirs"].shape[2] if "shapedirs" in arrays else 0
    # open-body phenotype directions span -1..1; SMPL betas are usually within +-3
    default_range = [-1.0, 1.0] if "shape_names" in arrays else [-3.0, 3.0]
    f64 = lambda k: arrays[k].astype(np.float64)  # noqa: E731
    data = RigData(
        joint_names=[str(n) for n in arrays["joint_names"]],
        parents=arrays["parents"].astype(np.int64),
        rest_joints=f64("rest_joints"),
        rest_vertices=f64("rest_vertices"),
        faces=arrays["faces"].astype(np.int64),
        skin_weights=f64("skin_weights"),
        shapedirs=f64("shapedirs") if K else np.zeros((V, 3, 0)),
        joint_shapedirs=f64("joint_shapedirs") if "joint_shapedirs" in arrays else np.zeros((J, 3, K)),
        shape_names=([str(n) for n in arrays["shape_names"]] if "shape_names" in arrays
                     else [f"beta{k}" for k in range(K)]),
        shape_range=f64("shape_range") if "shape_range" in arrays else np.tile(default_range, (K, 1)),
        kind=str(arrays["kind"]) if "kind" in arrays else "open",
    )
    data.validate()
    return data
