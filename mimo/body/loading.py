"""``load_body``: the open default body, or SMPL / SMPL-H / SMPL-X model files the user supplies.

SMPL-family files are read by our own code (no smplx, no chumpy): ``.npz`` with ``np.load`` and
no pickle; ``.pkl`` (also the original Python-2 pickles with chumpy arrays and a scipy sparse
``J_regressor``) with a restricted unpickler that only rebuilds numpy arrays, sparse matrices and
chumpy leaf arrays, so a model file cannot run code.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from mimo.body.face import FaceTables
from mimo.body.joints import (
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    SMPLH_JOINT_NAMES,
    SMPLH_PARENTS,
    SMPLX_JOINT_NAMES,
    SMPLX_PARENTS,
)
from mimo.body.kinds import BODY_KINDS, MODELS_ENV, default_models_dir, find_model_file  # noqa: F401
from mimo.body.model import BodyModel

OPEN_BODY_PATH = Path(__file__).with_name("data") / "open_body.npz"
SHAPE_SPACE_DIM = 300  # SMPL-X/SMPL 1.1 files stack 300 shape + 100 expression directions


def load_body(spec: str | os.PathLike = "open", device: str | torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> BodyModel:
    """Load a body model.

    Args:
        spec: ``"open"`` (the shipped open body, default); ``"smpl"``, ``"smplh"`` or ``"smplx"``
            (a neutral model file found under :func:`default_models_dir`); or a path to an SMPL
            (``.pkl``), SMPL-H (``.npz``/``.pkl``) or SMPL-X (``.npz``/``.pkl``) model file.
        device, dtype: where the model's tensors live (float32 or float64).

    Shapes:
        -> BodyModel with rest_vertices (V, 3), faces (T, 3), rest_joints (J, 3),
           skin_weights (V, J); open body: V=13718, T=27420, J=52, 6 betas.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    spec_str = os.fspath(spec)
    if spec_str == "open":
        model = load_open_body(dtype=dtype)
    elif spec_str in BODY_KINDS:  # the registry (mimo/body/kinds.py): a licensed file, found by name
        model = load_smpl_family(find_model_file(spec_str), dtype=dtype)
    else:
        path = Path(spec_str)
        if path.suffix not in (".pkl", ".npz"):
            raise ValueError(f"spec: expected 'open', 'smpl', 'smplh', 'smplx' or a .pkl/.npz "
                             f"model file, got {spec_str!r}")
        if not path.is_file():
            raise FileNotFoundError(f"body model file {path} does not exist. Licensed SMPL-family "
                                    f"files are not shipped; get them from {_hint()}")
        model = load_smpl_family(path, dtype=dtype)
    return model.to(device) if device is not None else model


def _hint() -> str:
    where = [k.where for k in BODY_KINDS.values() if not k.shipped]
    return "; ".join(where) + f" and put them under {default_models_dir()}/<kind>/"


def load_open_body(path: str | os.PathLike = OPEN_BODY_PATH,
                   dtype: torch.dtype = torch.float32) -> BodyModel:
    """The open default body (keys of ``open_body.npz``: v_template (V,3), faces (T,3),
    shapedirs (V,3,K), joint_template (J,3), joint_shapedirs (J,3,K), weights (V,J), parents (J,),
    joint_names (J,), beta_names (K,), provenance (JSON text)).

    Shapes:
        -> BodyModel (V=13718, T=27420, J=52, K=6)
    """
    with np.load(path, allow_pickle=False) as d:
        weights = d["weights"].astype(np.float64)
        weights /= weights.sum(1, keepdims=True)  # stored as float32: make rows sum to 1 exactly
        return BodyModel(kind="open", v_template=d["v_template"], faces=d["faces"],
                         shapedirs=d["shapedirs"], joint_template=d["joint_template"],
                         joint_shapedirs=d["joint_shapedirs"], weights=weights,
                         parents=d["parents"], joint_names=d["joint_names"],
                         beta_names=d["beta_names"], dtype=dtype)


# ------------------------------------------------------------------------------------ SMPL files
class _Opaque:
    """Stand-in for chumpy and scipy.sparse objects inside a model pickle: keeps their state."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        self.__dict__["_state"] = state


def _opaque_class(module: str, name: str) -> type:
    return type(name, (_Opaque,), {"_origin": f"{module}.{name}"})


class _ModelUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class({"copy_reg": "copyreg", "__builtin__": "builtins"}
                                      .get(module, module), name)
        if module.startswith(("chumpy", "scipy.sparse")):
            return _opaque_class(module, name)
        raise pickle.UnpicklingError(f"model file refers to {module}.{name}, which a body model "
                                     f"file never needs; refusing to load it")


def _to_array(x) -> np.ndarray:
    """numpy array from an array, a chumpy leaf array or a pickled scipy sparse matrix."""
    if isinstance(x, _Opaque):
        state = x.__dict__.get("_state", {})
        if isinstance(state, tuple):  # (state, slotstate) from some protocols
            state = state[0] or {}
        if "x" in state:  # chumpy Ch: the value lives in 'x'
            return np.asarray(state["x"])
        if "indptr" in state:  # scipy csc/csr matrix
            shape = state.get("_shape") or state.get("shape")
            data, indices, indptr = (np.asarray(state[k]) for k in ("data", "indices", "indptr"))
            out = np.zeros(shape, dtype=data.dtype)
            csc = "csc" in type(x)._origin or state.get("format") == "csc"
            for major in range(len(indptr) - 1):
                sl = slice(indptr[major], indptr[major + 1])
                if csc:
                    out[indices[sl], major] = data[sl]
                else:
                    out[major, indices[sl]] = data[sl]
            return out
        raise ValueError(f"cannot read {type(x)._origin} from the model file")
    return np.asarray(x)


def read_model_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays of an SMPL-family model file (.npz or .pkl), without running pickled code."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as d:
            return {k: d[k] for k in d.files}
    with open(path, "rb") as f:
        raw = _ModelUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a pickled dict of arrays, got {type(raw).__name__}")
    out = {}
    for k, v in raw.items():
        try:
            out[str(k)] = _to_array(v)
        except ValueError:
            continue  # fields we do not use (e.g. 'bs_style' strings) may stay unread
    return out


def load_smpl_family(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> BodyModel:
    """An SMPL (24 joints), SMPL-H (52) or SMPL-X (55) model file as a :class:`BodyModel`.

    Joints follow SMPL: ``J_regressor @ (v_template + shapedirs @ betas)``, folded into
    ``rest_joints`` and ``joint_shapedirs``; pose correctives come from ``posedirs``. SMPL-X
    expression directions are not used (zero expression). An SMPL-X file's facial landmark tables,
    where it has them, give the posed body's OpenPose face points (:mod:`mimo.body.face`).

    Shapes:
        -> BodyModel with J = 24, 52 or 55
    """
    d = read_model_file(path)
    need = ["v_template", "f", "shapedirs", "J_regressor", "weights", "kintree_table"]
    missing = [k for k in need if k not in d]
    if missing:
        raise ValueError(f"{path}: not an SMPL-family model file (missing {missing})")
    J = d["weights"].shape[1]
    layouts = {24: ("smpl", SMPL_JOINT_NAMES, SMPL_PARENTS),
               52: ("smplh", SMPLH_JOINT_NAMES, SMPLH_PARENTS),
               55: ("smplx", SMPLX_JOINT_NAMES, SMPLX_PARENTS)}
    if J not in layouts:
        raise ValueError(f"{path}: expected 24 (SMPL), 52 (SMPL-H) or 55 (SMPL-X) joints, got {J}")
    kind, names, parents = layouts[J]
    file_parents = d["kintree_table"][0].astype(np.int64)
    file_parents[0] = -1
    if [int(p) for p in file_parents] != parents:
        raise ValueError(f"{path}: kintree_table does not match the {kind} joint tree")
    v_template = d["v_template"].astype(np.float64)
    shapedirs = d["shapedirs"].astype(np.float64)
    if kind == "smplx":  # shape directions come before expression ones: 300 + 100, or 10 + 10
        shapedirs = shapedirs[:, :, :SHAPE_SPACE_DIM if shapedirs.shape[-1] >= 400 else 10]
    else:
        shapedirs = shapedirs[:, :, :SHAPE_SPACE_DIM]
    jreg = d["J_regressor"].astype(np.float64)
    posedirs = d.get("posedirs")
    if posedirs is not None:  # (V, 3, P) -> (P, V*3), as the file stores it
        posedirs = posedirs.reshape(-1, posedirs.shape[-1]).T
    face_tables = FaceTables.from_model_file(d, dtype) if kind == "smplx" else None
    return BodyModel(kind=kind, v_template=v_template, faces=d["f"].astype(np.int64),
                     shapedirs=shapedirs, joint_template=jreg @ v_template,
                     joint_shapedirs=np.einsum("jv,vik->jik", jreg, shapedirs),
                     weights=d["weights"], parents=parents, joint_names=names,
                     posedirs=posedirs, face_tables=face_tables, dtype=dtype)
