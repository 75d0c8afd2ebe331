"""Read body-motion sequences for the rig and resample them to the scene's fps.

Formats:
    AMASS ``.npz``: ``poses`` (F, 156) SMPL-H [or (F, 165) SMPL-X: body + hands are taken],
        ``trans`` (F, 3), ``mocap_framerate`` (or ``mocap_frame_rate``), optional ``betas``.
    SMPL parameter ``.npz``/``.pkl``: ``global_orient`` (F, 3) or (F, 1, 3, 3) rotation matrices,
        ``body_pose`` (F, 21|23, 3) or (F, 21|23, 3, 3), optional ``transl`` (F, 3),
        ``left_hand_pose``/``right_hand_pose``, ``fps`` (default 30). ``.pkl`` files are read with
        an unpickler that only rebuilds numpy arrays (nothing else from the file can run).
AMASS data are Z-up (their mocap world); this reader turns them into the wire's Y-up world by
rotating ``global_orient`` and ``trans`` by -90° about X, like the official AMASS renderers.

Shapes: axis_angle (F, 52, 3), transl (F, 3)
"""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np

from . import rotations as rot
from .rig import join_smplh

_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclasses.dataclass
class MotionSequence:
    axis_angle: np.ndarray   # (F, 52, 3)
    transl: np.ndarray       # (F, 3)
    fps: float
    betas: np.ndarray | None = None


class _NumpyOnly(pickle.Unpickler):
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise ValueError(f"path: the pickle wants {module}.{name}; only numpy arrays are read")


def _aa(x: np.ndarray, F: int, J: int, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape[-2:] == (3, 3):
        a = rot.matrix_to_axis_angle(a)
    a = a.reshape(F, -1, 3) if a.size == F * J * 3 or a.size % (F * 3) == 0 else a
    if a.shape[:2] != (F, J) and J != -1:
        raise ValueError(f"{name}: expected {J} joints per frame, got shape {np.shape(x)}")
    return a


def read_motion(path: str, pelvis_rest: np.ndarray | None = None) -> MotionSequence:
    """Read an AMASS or SMPL-parameter file (see the module docstring). ``pelvis_rest`` (3,) is
    the rest pelvis of the target body (wire axes): SMPL turns ``global_orient`` about it, so the
    Z-up -> Y-up turn of AMASS data needs it to keep the world path exact (default: origin)."""
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            d = _NumpyOnly(f, encoding="latin1").load()
        if not isinstance(d, dict):
            raise ValueError(f"path: expected a dict of arrays in {path}, got {type(d).__name__}")
    else:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    if "poses" in d:
        poses = np.asarray(d["poses"], dtype=np.float64)
        if poses.ndim != 2 or poses.shape[1] not in (156, 165):
            raise ValueError(f"poses: expected (F, 156) SMPL-H or (F, 165) SMPL-X, got {poses.shape}")
        F = poses.shape[0]
        if poses.shape[1] == 156:
            go, bp, lh, rh = poses[:, :3], poses[:, 3:66], poses[:, 66:111], poses[:, 111:156]
        else:
            go, bp, lh, rh = poses[:, :3], poses[:, 3:66], poses[:, 75:120], poses[:, 120:165]
        trans = np.asarray(d.get("trans", np.zeros((F, 3))), dtype=np.float64)
        fps = float(d.get("mocap_framerate", d.get("mocap_frame_rate", 120.0)))
        # Z-up mocap world -> Y-up wire world (rotate the root and the path, not the joints)
        go = rot.matrix_to_axis_angle(_Z_UP_TO_Y_UP @ rot.axis_angle_to_matrix(go))
        aa = join_smplh(go, bp.reshape(F, 21, 3), lh.reshape(F, 15, 3), rh.reshape(F, 15, 3))
        # v = R_go (v0 - J0) + J0 + t, turned by Rz: Rz R_go (v0 - J0) + J0 + [Rz (J0 + t) - J0]
        J0 = np.zeros(3) if pelvis_rest is None else np.asarray(pelvis_rest, dtype=np.float64)
        trans = (J0 + trans) @ _Z_UP_TO_Y_UP.T - J0
        return MotionSequence(aa, trans, fps, d.get("betas"))
    if "global_orient" not in d or "body_pose" not in d:
        raise ValueError(f"path: {path} has neither AMASS 'poses' nor SMPL 'global_orient'/'body_pose'")
    go = np.asarray(d["global_orient"], dtype=np.float64)
    F = go.shape[0]
    go = _aa(go, F, 1, "global_orient").reshape(F, 3)
    bp = np.asarray(d["body_pose"], dtype=np.float64)
    J = 23 if bp.size in (F * 23 * 3, F * 23 * 9) else 21
    bp = _aa(bp, F, J, "body_pose")
    hands = {k: _aa(d[k], F, 15, k) for k in ("left_hand_pose", "right_hand_pose") if k in d}
    transl = np.asarray(d.get("transl", np.zeros((F, 3))), dtype=np.float64).reshape(F, 3)
    fps = float(np.asarray(d.get("fps", 30.0)))
    return MotionSequence(join_smplh(go, bp, **hands), transl, fps,
                          np.asarray(d["betas"]) if "betas" in d else None)


def resample(axis_angle: np.ndarray, transl: np.ndarray, src_fps: float, dst_fps: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Resample to ``dst_fps``: rotations by quaternion slerp, translation linearly; the clip keeps
    its duration (frames at t = k / dst_fps up to the last source time).

    Shapes: axis_angle (F, J, 3), transl (F, 3) -> (F', J, 3), (F', 3)
    """
    if not (src_fps > 0 and dst_fps > 0):
        raise ValueError(f"fps: expected positive rates, got {src_fps} -> {dst_fps}")
    aa = np.asarray(axis_angle, dtype=np.float64)
    F = aa.shape[0]
    if F == 1 or abs(src_fps - dst_fps) < 1e-9:
        return aa.copy(), np.asarray(transl, dtype=np.float64).copy()
    n = int(np.floor((F - 1) * dst_fps / src_fps + 1e-9)) + 1
    s = np.arange(n) * src_fps / dst_fps
    i0 = np.minimum(np.floor(s).astype(int), F - 2)
    w = (s - i0)[:, None]
    q = rot.axis_angle_to_quaternion(aa)
    q0, q1 = q[i0], q[i0 + 1]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    wj = w[:, None, :]
    lin = sin < 1e-8
    a = np.where(lin, 1.0 - wj, np.sin((1.0 - wj) * theta) / np.where(lin, 1.0, sin))
    b = np.where(lin, wj, np.sin(wj * theta) / np.where(lin, 1.0, sin))
    qs = a * q0 + b * q1
    t = np.asarray(transl, dtype=np.float64)
    ts = (1.0 - w) * t[i0] + w * t[i0 + 1]
    return rot.quaternion_to_axis_angle(qs), ts
