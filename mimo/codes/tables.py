"""Vertex colour code tables and hand removal (docs/MIMO.md §9.5–9.6).

A code table gives every body vertex a fixed colour in [0, 1]³. Tables returned here are quantized
to multiples of 1/255, because the official renderer handed its colours to OpenGL as RGBA8
(trimesh rounds colour × 255), so that is what the pose guider saw.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

HAND_SETS = ("left_hand", "right_hand")


def quantize(colors: np.ndarray) -> np.ndarray:
    """Round colours to the RGBA8 steps an OpenGL renderer stores. Shapes: (V, C) -> (V, C) float32."""
    return (np.round(np.clip(colors, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def default_code_table(rest_vertices) -> np.ndarray:
    """The default code: rest-pose coordinates normalised per axis to [0, 1] (x→R, y→G, z→B).

    Shapes: rest_vertices (V, 3) -> (V, 3) float32 in [0, 1] (multiples of 1/255)
    """
    rest = np.asarray(rest_vertices, dtype=np.float64)
    if rest.ndim != 2 or rest.shape[1] != 3 or rest.shape[0] < 1:
        raise ValueError(f"rest_vertices: expected (V, 3) with V >= 1, got {rest.shape}")
    if not np.isfinite(rest).all():
        raise ValueError("rest_vertices: expected finite values, got NaN or inf")
    lo, hi = rest.min(0), rest.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return quantize((rest - lo) / span)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays only: a table file cannot run code when loaded."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "dict"), ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a code table file")


def _load_npy_object(path: Path):
    """Read a ``.npy`` that holds a pickled object (``np.save`` of a dict) without running code."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        if not dtype.hasobject:
            fh.seek(0)
            return np.load(fh)
        obj = _NumpyOnlyUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
    if isinstance(obj, np.ndarray) and obj.shape == () and shape == ():
        obj = obj.item()
    return obj


def load_sdc_table(path, num_vertices: int | None = None, key: str = "smpl") -> np.ndarray:
    """Load a code table such as the official ``assets/sdc_info.npy``.

    Accepted: a ``.npy`` holding a pickled dict whose ``key`` entry is the table (the official
    layout; only dicts and numpy arrays are unpickled, so the file cannot run code), a ``.npy``
    holding the table itself, or a ``.npz`` with a ``key`` entry. The table may be float in [0, 1]
    or uint8 0–255, with 3 (RGB) or 4 (RGBA: alpha is dropped) channels.

    Shapes: -> (V, 3) float32 in [0, 1] (multiples of 1/255); V must equal ``num_vertices`` if given.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: expected an existing code table file, got {str(path)!r}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if key not in z.files:
                    raise ValueError(f"path: expected an entry {key!r} in {path.name}, got {z.files}")
                table = z[key]
        else:
            table = _load_npy_object(path)
    except (pickle.UnpicklingError, OSError, EOFError) as e:
        raise ValueError(f"path: could not read a code table from {path.name}: {e}") from None
    if isinstance(table, dict):
        if key not in table:
            raise ValueError(f"path: expected a dict entry {key!r} in {path.name}, got {sorted(map(str, table))}")
        table = table[key]
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[1] not in (3, 4):
        raise ValueError(f"{key}: expected a (V, 3) or (V, 4) colour table, got shape {table.shape}")
    if num_vertices is not None and table.shape[0] != num_vertices:
        raise ValueError(f"{key}: expected one colour per body vertex ({num_vertices}), got {table.shape[0]}")
    table = table[:, :3]
    if table.dtype == np.uint8:
        return (table.astype(np.float32) / 255.0).astype(np.float32)
    if table.dtype.kind not in "fiu":
        raise ValueError(f"{key}: expected float or uint8 colours, got dtype {table.dtype}")
    table = table.astype(np.float64)
    if not np.isfinite(table).all() or table.min() < 0 or table.max() > 1:
        raise ValueError(f"{key}: expected float colours in [0, 1] (or uint8), got range "
                         f"[{np.nanmin(table)}, {np.nanmax(table)}]")
    return quantize(table)


def remove_faces(faces, vertex_ids) -> np.ndarray:
    """Drop the faces whose three vertices all lie in ``vertex_ids`` (the official hand removal).

    Vertices left unreferenced are simply never drawn, so vertex indices stay valid.

    Shapes: faces (T, 3) int, vertex_ids (N,) int -> (T', 3) int64 with T' <= T
    """
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces: expected (T, 3), got {faces.shape}")
    ids = np.asarray(vertex_ids, dtype=np.int64).ravel()
    inside = np.isin(faces, ids).all(1)
    return faces[~inside].astype(np.int64)


def remove_hands(faces, vertex_sets: dict, hands=HAND_SETS) -> np.ndarray:
    """Remove hand faces using a body's named ``vertex_sets`` (e.g. ``"left_hand"``, ``"right_hand"``).

    Shapes: faces (T, 3) -> (T', 3) int64
    """
    for name in hands:
        if name not in vertex_sets:
            raise ValueError(f"hands: expected vertex sets {list(hands)} in the body, "
                             f"missing {name!r} (have {sorted(vertex_sets)})")
        faces = remove_faces(faces, vertex_sets[name])
    return np.asarray(faces, dtype=np.int64)
