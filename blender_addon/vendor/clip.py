"""MotionClip (bodies with per-frame SMPL-style parameters) and CameraTrack (per-frame OpenCV
cameras), their ``.npz`` file format, validation and fps resampling. numpy only.

File format (``np.savez_compressed``, read with ``allow_pickle=False``). A file may hold a clip,
a camera track, or both; keys:

=============================  ==============  ===================================================
key                            shape / dtype   meaning
=============================  ==============  ===================================================
``format``                     () str          "mimo.motion"
``version``                    () int          1
``clip.fps``                   () float        frames per second
``clip.num_bodies``            () int          N
``clip.body{i}.model``         () str          body model the params are meant for: "open",
                                               "smpl", "smplh" or "smplx"
``clip.body{i}.name``          () str          free label
``clip.body{i}.global_orient`` (F, 3) float    axis-angle of the pelvis in world space
``clip.body{i}.body_pose``     (F, 21|23, 3)   local axis-angle per body joint (SMPL order)
``clip.body{i}.transl``        (F, 3) float    metres, SMPL ``transl``
``clip.body{i}.betas``         (K,) float      shape coefficients of ``model`` (or (F, K): per frame)
``clip.body{i}.left_hand_pose``  (F, 15, 3)    optional: absent means no hand pose, and the
                                               motion codes leave that hand out (as the official
                                               renderer did for undetected hands)
``clip.body{i}.right_hand_pose`` (F, 15, 3)    optional
``camera.fps``                 () float
``camera.width``, ``.height``  () int          pixels
``camera.K``                   (F, 3, 3)       intrinsics in pixels for width x height
``camera.R``, ``camera.t``     (F, 3, 3), (F, 3)  world-to-camera: x_cam = R x_world + t
=============================  ==============  ===================================================

World space is the one of docs/CONVENTIONS.md: metres, Y up (SMPL axes). Cameras are OpenCV (x right, y down,
z forward). Pixel (u, v) covers [u, u+1) x [v, v+1) with its centre at (u + 0.5, v + 0.5),
origin at the top-left corner: a centred principal point is (W / 2, H / 2), not ((W-1) / 2, ...).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from .rotations import (
    axis_angle_to_quaternion,
    matrix_to_quaternion,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    slerp,
)

FORMAT = "mimo.motion"
VERSION = 1
BODY_MODELS = ("open", "smpl", "smplh", "smplx")
MAX_BODIES = 16


def _arr(name: str, x, shape: tuple, frames: int | None = None) -> np.ndarray:
    """float64 array of ``shape`` (None = any), finite; ValueError naming ``name`` otherwise."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    want = tuple("F" if (i == 0 and frames is not None and s is None) else s
                 for i, s in enumerate(shape))
    ok = a.ndim == len(shape) and all(s is None or a.shape[i] == s for i, s in enumerate(shape))
    if ok and frames is not None and a.shape[0] != frames:
        ok, want = False, (frames,) + want[1:]
    if not ok:
        raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf")
    return a


@dataclasses.dataclass
class BodyTrack:
    """One body's motion.

    Shapes:
        global_orient (F, 3), body_pose (F, 21, 3) or (F, 23, 3), transl (F, 3), betas (K,) or
        (F, K), left_hand_pose / right_hand_pose (F, 15, 3) or None (no pose: the codes leave the
        hand out)
    """

    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    betas: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    left_hand_pose: np.ndarray | None = None
    right_hand_pose: np.ndarray | None = None
    model: str = "open"
    name: str = ""

    @property
    def num_frames(self) -> int:
        return int(np.shape(self.global_orient)[0])

    def validate(self, prefix: str = "body") -> BodyTrack:
        """Check and normalise (float64) every field in place; returns self."""
        if self.model not in BODY_MODELS:
            raise ValueError(f"{prefix}.model: expected one of {BODY_MODELS}, got {self.model!r}")
        self.global_orient = _arr(f"{prefix}.global_orient", self.global_orient, (None, 3))
        F = self.num_frames
        if F < 1:
            raise ValueError(f"{prefix}.global_orient: expected at least 1 frame, got 0")
        bp = np.asarray(self.body_pose)
        n = bp.shape[1] if bp.ndim == 3 and bp.shape[1] in (21, 23) else 21
        self.body_pose = _arr(f"{prefix}.body_pose", bp, (None, n, 3), F)
        self.transl = _arr(f"{prefix}.transl", self.transl, (None, 3), F)
        betas = np.asarray(self.betas)
        self.betas = _arr(f"{prefix}.betas", betas, (None, None) if betas.ndim == 2 else (None,),
                          F if betas.ndim == 2 else None)
        for side in ("left", "right"):
            key = f"{side}_hand_pose"
            if getattr(self, key) is not None:
                setattr(self, key, _arr(f"{prefix}.{key}", getattr(self, key), (None, 15, 3), F))
        self.name = str(self.name)
        return self

    def params(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Keyword arguments for ``BodyModel.forward`` (numpy; wrap with torch.as_tensor).

        Shapes:
            -> global_orient (F', 3), body_pose (F', n, 3), transl (F', 3), betas (F', K),
               [left|right]_hand_pose (F', 15, 3)
        """
        sl = slice(start, stop)
        out = {"global_orient": self.global_orient[sl], "body_pose": self.body_pose[sl],
               "transl": self.transl[sl]}
        F = out["transl"].shape[0]
        if np.shape(self.betas)[-1]:
            betas = np.asarray(self.betas)
            out["betas"] = betas[sl] if betas.ndim == 2 else np.broadcast_to(betas, (F, len(betas))).copy()
        for key in ("left_hand_pose", "right_hand_pose"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)[sl]
        return out


@dataclasses.dataclass
class MotionClip:
    """Several bodies moving together at ``fps`` frames per second (all bodies share F frames)."""

    fps: float
    bodies: list[BodyTrack]

    @property
    def num_frames(self) -> int:
        return self.bodies[0].num_frames

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.num_frames - 1) / self.fps

    def validate(self) -> MotionClip:
        fps = float(np.asarray(self.fps))
        if not (np.isfinite(fps) and 0 < fps <= 1000):
            raise ValueError(f"fps: expected a number in (0, 1000], got {self.fps!r}")
        self.fps = fps
        if not 1 <= len(self.bodies) <= MAX_BODIES:
            raise ValueError(f"bodies: expected 1..{MAX_BODIES} bodies, got {len(self.bodies)}")
        for i, body in enumerate(self.bodies):
            body.validate(f"body{i}")
            if body.num_frames != self.bodies[0].num_frames:
                raise ValueError(f"body{i}.global_orient: expected {self.bodies[0].num_frames} "
                                 f"frames like body0, got {body.num_frames}")
        return self

    def save(self, path: str | os.PathLike, camera: CameraTrack | None = None) -> None:
        save_npz(path, clip=self, camera=camera)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MotionClip:
        clip, _ = load_npz(path)
        if clip is None:
            raise ValueError(f"path: {os.fspath(path)} holds no motion clip (no 'clip.*' keys)")
        return clip

    def resample(self, fps: float) -> MotionClip:
        """Resample to ``fps``: rotations by slerp, translations linearly, over the same duration
        (frames at k / fps for k = 0, 1, ... while within the clip); betas are kept.

        Shapes:
            per-frame fields (F, ...) -> (F', ...), F' = floor((F - 1) / self.fps * fps) + 1
        """
        times, i0, w = _resample_index(self.num_frames, self.fps, fps)
        bodies = []
        for b in self.bodies:
            rot = lambda a: _slerp_axis_angle(a, i0, w) if a is not None else None  # noqa: E731
            lerp = (1 - w)[:, None] * b.transl[i0] + w[:, None] * b.transl[np.minimum(
                i0 + 1, b.num_frames - 1)]
            betas = np.asarray(b.betas)
            if betas.ndim == 2:  # per-frame shape: linear like the translation
                betas = (1 - w)[:, None] * betas[i0] + w[:, None] * betas[np.minimum(i0 + 1, b.num_frames - 1)]
            bodies.append(dataclasses.replace(
                b, global_orient=rot(b.global_orient), body_pose=rot(b.body_pose), transl=lerp, betas=betas,
                left_hand_pose=rot(b.left_hand_pose), right_hand_pose=rot(b.right_hand_pose)))
        return MotionClip(fps=float(fps), bodies=bodies).validate()


@dataclasses.dataclass
class CameraTrack:
    """Per-frame OpenCV pinhole cameras (see the module docstring for the pixel convention).

    Shapes:
        K (F, 3, 3), R (F, 3, 3), t (F, 3); width, height in pixels
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int
    fps: float = 30.0

    @property
    def num_frames(self) -> int:
        return int(np.shape(self.K)[0])

    def validate(self) -> CameraTrack:
        self.K = _arr("camera.K", self.K, (None, 3, 3))
        F = self.num_frames
        if F < 1:
            raise ValueError("camera.K: expected at least 1 frame, got 0")
        self.R = _arr("camera.R", self.R, (None, 3, 3), F)
        self.t = _arr("camera.t", self.t, (None, 3), F)
        for key in ("width", "height"):
            v = getattr(self, key)
            if int(v) != v or not 1 <= int(v) <= 8192:
                raise ValueError(f"camera.{key}: expected an integer in 1..8192, got {v!r}")
            setattr(self, key, int(v))
        if not np.allclose(self.R @ np.swapaxes(self.R, 1, 2), np.eye(3), atol=1e-5) or \
                not np.allclose(np.linalg.det(self.R), 1.0, atol=1e-5):
            raise ValueError("camera.R: expected rotation matrices (orthonormal, det +1)")
        if np.any(self.K[:, 0, 0] <= 0) or np.any(self.K[:, 1, 1] <= 0) or \
                not np.allclose(self.K[:, 2], [0.0, 0.0, 1.0]):
            raise ValueError("camera.K: expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with "
                             "fx, fy > 0")
        fps = float(self.fps)
        if not (np.isfinite(fps) and 0 < fps <= 1000):
            raise ValueError(f"camera.fps: expected a number in (0, 1000], got {self.fps!r}")
        self.fps = fps
        return self

    @classmethod
    def static(cls, K, R, t, width: int, height: int, num_frames: int, fps: float = 30.0
               ) -> CameraTrack:
        """One camera repeated over ``num_frames``.

        Shapes:
            K (3, 3), R (3, 3), t (3,) -> CameraTrack with F = num_frames
        """
        rep = lambda a: np.repeat(np.asarray(a, dtype=np.float64)[None], num_frames, 0)  # noqa
        return cls(rep(K), rep(R), rep(t), width, height, fps).validate()

    @classmethod
    def look_at(cls, eye, target, width: int, height: int, num_frames: int = 1,
                fov_y_deg: float = 40.0, up=(0.0, 1.0, 0.0), fps: float = 30.0) -> CameraTrack:
        """A static camera at ``eye`` looking at ``target`` (world Y up), square pixels,
        principal point at the image centre (W/2, H/2).

        Shapes:
            eye (3,), target (3,) -> CameraTrack with F = num_frames
        """
        eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
        z = target - eye
        z /= np.linalg.norm(z)
        x = np.cross(z, up)  # camera x (right); camera y = z cross x points down
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])  # rows: camera axes in world coordinates
        f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2)
        K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
        return cls.static(K, R, -R @ eye, width, height, num_frames, fps)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (continuous; pixel (u, v) has its centre at (u+0.5, v+0.5)) and
        depth along the optical axis.

        Shapes:
            points (F, N, 3) world -> uv (F, N, 2), depth (F, N)
        """
        points = _arr("points", points, (self.num_frames, None, 3))
        cam = np.einsum("fij,fnj->fni", self.R, points) + self.t[:, None]
        pix = np.einsum("fij,fnj->fni", self.K, cam)
        return pix[..., :2] / pix[..., 2:3], cam[..., 2]

    def save(self, path: str | os.PathLike) -> None:
        save_npz(path, camera=self)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CameraTrack:
        _, camera = load_npz(path)
        if camera is None:
            raise ValueError(f"path: {os.fspath(path)} holds no camera track (no 'camera.*' keys)")
        return camera

    def resample(self, fps: float) -> CameraTrack:
        """Rotations by slerp, translations and intrinsics linearly.

        Shapes:
            K, R (F, 3, 3), t (F, 3) -> (F', ...), F' as for MotionClip.resample
        """
        _, i0, w = _resample_index(self.num_frames, self.fps, fps)
        i1 = np.minimum(i0 + 1, self.num_frames - 1)
        q = matrix_to_quaternion(self.R)
        R = quaternion_to_matrix(slerp(q[i0], q[i1], w))
        lin = lambda a: a[i0] + w.reshape((-1,) + (1,) * (a.ndim - 1)) * (a[i1] - a[i0])  # noqa
        return CameraTrack(lin(self.K), R, lin(self.t), self.width, self.height, float(fps)
                           ).validate()


def _resample_index(num_frames: int, fps_in: float, fps_out: float):
    fps_out = float(fps_out)
    if not (np.isfinite(fps_out) and 0 < fps_out <= 1000):
        raise ValueError(f"fps: expected a number in (0, 1000], got {fps_out!r}")
    duration = (num_frames - 1) / fps_in
    n = int(np.floor(duration * fps_out + 1e-9)) + 1
    times = np.arange(n) / fps_out
    pos = times * fps_in
    i0 = np.minimum(np.floor(pos + 1e-9).astype(np.int64), num_frames - 1)
    w = np.clip(pos - i0, 0.0, 1.0)
    return times, i0, w


def _slerp_axis_angle(a: np.ndarray, i0: np.ndarray, w: np.ndarray) -> np.ndarray:
    q = axis_angle_to_quaternion(a)
    i1 = np.minimum(i0 + 1, len(a) - 1)
    ww = w.reshape((-1,) + (1,) * (a.ndim - 2))
    return quaternion_to_axis_angle(slerp(q[i0], q[i1], ww))


def save_npz(path: str | os.PathLike, clip: MotionClip | None = None,
             camera: CameraTrack | None = None) -> None:
    """Write a clip and/or a camera track to one ``.npz`` (format in the module docstring).

    Shapes:
        see the key table in the module docstring
    """
    if clip is None and camera is None:
        raise ValueError("save_npz: expected a clip, a camera or both, got neither")
    out: dict[str, np.ndarray] = {"format": np.asarray(FORMAT), "version": np.asarray(VERSION)}
    if clip is not None:
        clip.validate()
        out["clip.fps"] = np.asarray(clip.fps)
        out["clip.num_bodies"] = np.asarray(len(clip.bodies))
        for i, b in enumerate(clip.bodies):
            p = f"clip.body{i}."
            out[p + "model"] = np.asarray(b.model)
            out[p + "name"] = np.asarray(b.name)
            for key in ("global_orient", "body_pose", "transl", "betas", "left_hand_pose",
                        "right_hand_pose"):
                if getattr(b, key) is not None:
                    out[p + key] = np.asarray(getattr(b, key), dtype=np.float32 if key != "transl"
                                              else np.float64)
    if camera is not None:
        camera.validate()
        out.update({"camera.fps": np.asarray(camera.fps), "camera.width": np.asarray(camera.width),
                    "camera.height": np.asarray(camera.height), "camera.K": camera.K,
                    "camera.R": camera.R, "camera.t": camera.t})
    np.savez_compressed(path, **out)


def load_npz(path: str | os.PathLike) -> tuple[MotionClip | None, CameraTrack | None]:
    """Read and validate a file written by :func:`save_npz`; either part may be None.

    Shapes:
        see the key table in the module docstring
    """
    with np.load(path, allow_pickle=False) as d:
        data = {k: d[k] for k in d.files}
    if str(data.get("format", "")) != FORMAT:
        raise ValueError(f"path: {os.fspath(path)} is not a {FORMAT} file (format key "
                         f"{data.get('format')!r})")
    if int(data.get("version", -1)) != VERSION:
        raise ValueError(f"version: expected {VERSION}, got {data.get('version')!r}")
    clip = camera = None
    if "clip.fps" in data:
        n = int(data["clip.num_bodies"])
        if not 1 <= n <= MAX_BODIES:
            raise ValueError(f"clip.num_bodies: expected 1..{MAX_BODIES}, got {n}")
        bodies = []
        for i in range(n):
            p = f"clip.body{i}."
            missing = [k for k in ("global_orient", "body_pose", "transl") if p + k not in data]
            if missing:
                raise ValueError(f"{p}{missing[0]}: missing from {os.fspath(path)}")
            bodies.append(BodyTrack(
                global_orient=data[p + "global_orient"], body_pose=data[p + "body_pose"],
                transl=data[p + "transl"], betas=data.get(p + "betas", np.zeros(0)),
                left_hand_pose=data.get(p + "left_hand_pose"),
                right_hand_pose=data.get(p + "right_hand_pose"),
                model=str(data.get(p + "model", "open")), name=str(data.get(p + "name", ""))))
        clip = MotionClip(fps=float(data["clip.fps"]), bodies=bodies).validate()
    if "camera.K" in data:
        camera = CameraTrack(K=data["camera.K"], R=data["camera.R"], t=data["camera.t"],
                             width=int(data["camera.width"]), height=int(data["camera.height"]),
                             fps=float(data["camera.fps"])).validate()
    return clip, camera
