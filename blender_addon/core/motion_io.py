"""Motion files -> rig keyframe arrays, through the project's one implementation of the readers
(``mimo/motion``'s ``readers.py`` and ``clip.py``, vendored byte-identically).

Formats (by content, not by name):
    ``.npz`` with ``format == "mimo.motion"``: our clip format (``examples/motions/*.npz``)
    ``.npz`` with ``poses``: AMASS (SMPL-H / SMPL-X; Z-up mocap world turned to Y up)
    ``.npz`` with ``global_orient``/``body_pose``: SMPL parameters as 4D-Humans/HMR2 write them
    ``.pkl``: the same SMPL parameters (a dict, or a list of per-frame dicts), read with an
        unpickler that rebuilds only numpy arrays and plain containers (nothing else can run)
    ``.bvh``: retargeted onto the rig's rest joints (no Blender importer needed)

Shapes: axis_angle (F, 52, 3) (SMPL-H layout; SMPL's two hand joints dropped), transl (F, 3)
"""
from __future__ import annotations

import pickle

import numpy as np

from .rig import join_smplh


class _NumpyOnly(pickle.Unpickler):
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise ValueError(f"path: the pickle wants {module}.{name}; only numpy arrays are read")


def read_motion(path: str, rest_joints: np.ndarray | None = None, fps: float = 30.0):
    """Read a motion file as the vendored ``MotionClip``.

    ``rest_joints`` (52, 3): the target rig's rest joints (wire axes); its pelvis is the centre
    SMPL turns ``global_orient`` about (needed to turn Z-up or camera-frame data exactly) and a
    BVH is retargeted onto it. ``fps``: the rate of SMPL parameter files, which carry none.
    """
    from ..vendor import clip as C
    from ..vendor import readers as R

    pelvis = None if rest_joints is None else np.asarray(rest_joints, dtype=np.float64)[0]
    low = path.lower()
    if low.endswith(".bvh"):
        return R.read_bvh_clip(path, target_rest_joints=rest_joints)
    if low.endswith(".pkl"):
        with open(path, "rb") as f:
            data = _NumpyOnly(f, encoding="latin1").load()
        if not isinstance(data, (dict, list, tuple)):
            raise ValueError(f"path: expected a dict (or per-frame dicts) of arrays in {path}, "
                             f"got {type(data).__name__}")
        return R.read_smpl_params(data, fps=fps, pelvis=pelvis)[0]
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        is_clip = "format" in keys and str(z["format"]) == C.FORMAT
    if is_clip:
        clip, _ = C.load_npz(path)
        if clip is None:
            raise ValueError(f"path: {path} holds a camera track but no motion")
        return clip
    if "poses" in keys:
        return R.read_amass(path, pelvis=pelvis)
    if "global_orient" in keys:
        return R.read_smpl_params(path, fps=fps, pelvis=pelvis)[0]
    raise ValueError(f"path: {path} is neither a mimo.motion clip, AMASS ('poses') nor SMPL "
                     f"parameters ('global_orient', 'body_pose')")


def clip_to_rig(clip, fps: float, body: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One body of a clip, resampled to ``fps`` (slerp), as rig arrays.

    Shapes: -> axis_angle (F', 52, 3), transl (F', 3)
    """
    if not 0 <= body < len(clip.bodies):
        raise ValueError(f"body: expected 0..{len(clip.bodies) - 1}, got {body}")
    if abs(clip.fps - fps) > 1e-5 * fps:  # BVH frame times like 0.0333333 are 30 fps
        clip = clip.resample(fps)
    b = clip.bodies[body]
    return join_smplh(b.global_orient, b.body_pose, b.left_hand_pose, b.right_hand_pose), np.asarray(b.transl)
