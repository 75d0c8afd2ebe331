"""Make Training Dataset, the Blender-free half: the clip plan, ring cameras, clip folders.

A dataset is a folder of clip folders in the layout that ``mimo.data.layout`` reads (and
``mimo dataset check`` validates); this module writes that layout itself, because the add-on
cannot import ``mimo``:

    <clip>/meta.json        {"format": "mimo-clip", "version": 1, "fps", "num_frames", "width",
                             "height", "body_model", "source", "licence", "characters": [], ...}
    <clip>/frames.npy       (F, H, W, 3) uint8   the rendered character in the scene (ground truth)
    <clip>/codes.npy        (F, H, W, 3) uint8   motion codes of the same bodies and camera
    <clip>/scene.npy        (F, H, W, 3) uint8   the scene plate (the character hidden)
    <clip>/occlusion.npy    (F, H, W) uint8      0/255 where a scene object hides the character
    <clip>/character_0.png  the character in its rest pose, front view, on white (optional)
    <clip>/motion.npz       the bodies and the camera track (``mimo motion`` format): exactly
                            what Generate would send for this shot

A clip is written into ``.<clip>.partial`` and renamed when complete, so a cancelled or failed
run never leaves a half clip under a clip's name. Existing clip folders are replaced only when
asked (``overwrite``).

Shapes: Blender-world camera matrices (4, 4); points (N, 3) in Blender axes (Z up).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil

import numpy as np

from .frames import sanitize

FORMAT, VERSION = "mimo-clip", 1
MOTION_SUFFIXES = (".npz", ".bvh", ".pkl")
SCENE_MOTION = ""  # the plan's motion entry for "the animation the scene already has"


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """One clip to write: folder ``name``, a motion file (or :data:`SCENE_MOTION`) and a camera
    index into the run's camera list."""

    name: str
    motion: str
    camera: int


def motion_files(spec: str) -> list[str]:
    """The motion files of a ``spec``: a folder (its .npz/.bvh/.pkl files, sorted), or file paths
    separated by ``;``; empty: no files (the scene's own animation is used)."""
    parts = [p.strip() for p in spec.split(";") if p.strip()]
    out: list[str] = []
    for p in parts:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(MOTION_SUFFIXES))
            if not found:
                raise ValueError(f"motions: the folder {p} holds no motion files ({', '.join(MOTION_SUFFIXES)})")
            out += found
        elif os.path.isfile(p):
            if not p.lower().endswith(MOTION_SUFFIXES):
                raise ValueError(f"motions: {p} is not a motion file ({', '.join(MOTION_SUFFIXES)})")
            out.append(p)
        else:
            raise ValueError(f"motions: {p} does not exist")
    return out


def plan_clips(motions: list[str], camera_names: list[str]) -> list[ClipPlan]:
    """Every motion seen from every camera, one clip each, named ``<motion>_<camera>`` (file
    names sanitised; a clash gets a numbered suffix). ``motions`` empty: the scene's animation,
    named ``scene``."""
    if not camera_names:
        raise ValueError("cameras: no camera to render from")
    plans, used = [], set()
    for motion in motions or [SCENE_MOTION]:
        stem = os.path.splitext(os.path.basename(motion))[0] if motion else "scene"
        for k, cam in enumerate(camera_names):
            base = f"{sanitize(stem, 'motion')}_{sanitize(cam, 'camera')}"
            name, n = base, 1
            while name in used:
                name, n = f"{base}_{n}", n + 1
            used.add(name)
            plans.append(ClipPlan(name, motion, k))
    return plans


def existing_clips(out_dir: str, plans: list[ClipPlan]) -> list[str]:
    """The planned clip folders that already exist under ``out_dir`` (non-empty)."""
    return [p.name for p in plans if os.path.isdir(os.path.join(out_dir, p.name))
            and os.listdir(os.path.join(out_dir, p.name))]


def check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not (isinstance(v, (int, np.integer)) and 16 <= v <= 2048 and v % 8 == 0):
            raise ValueError(f"{name}: expected a multiple of 8 in 16..2048, got {v!r}")


# ---------------------------------------------------------------------------------- ring cameras
def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """A Blender camera's world matrix at ``eye`` looking at ``target`` with world Z up (the
    camera looks down its -Z axis, its +Y is up). Shapes: eye, target (3,) -> (4, 4)"""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    back = eye - target
    n = np.linalg.norm(back)
    if n < 1e-9:
        raise ValueError("look_at: the camera sits on its target")
    back /= n
    right = np.cross([0.0, 0.0, 1.0], back)
    if np.linalg.norm(right) < 1e-9:  # looking straight down or up
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    M = np.eye(4)
    M[:3, 0], M[:3, 1], M[:3, 2], M[:3, 3] = right, up, back, eye
    return M


def ring_cameras(points: np.ndarray, count: int, tan_x: float, tan_y: float, margin: float = 0.1,
                 elevation_deg: float = 5.0, front_deg: float = 0.0) -> list[np.ndarray]:
    """``count`` cameras on a horizontal ring around ``points`` (what the clip's body sweeps,
    Blender axes), evenly spaced from the front (``front_deg``: the azimuth of the first camera,
    0 = on -Y, where a body of the add-on faces), raised by ``elevation_deg``, each looking at
    the points' bounding-box centre from the distance that fits the whole box in a view whose
    half-width and half-height at unit depth are ``tan_x``, ``tan_y`` (W / 2 / fx, H / 2 / fy),
    plus ``margin`` (a fraction).

    Shapes: points (N, 3) -> list of (4, 4) world matrices
    """
    if count < 1:
        raise ValueError(f"cameras: expected at least 1 ring camera, got {count}")
    lo, hi = np.min(points, axis=0), np.max(points, axis=0)
    centre = (lo + hi) / 2
    radius = 0.5 * float(np.linalg.norm(hi[:2] - lo[:2]))  # any azimuth: the box's horizontal extent
    half_w, half_h = radius, 0.5 * float(hi[2] - lo[2])
    dist = (1 + margin) * max(half_w / tan_x, half_h / tan_y) + radius
    el = np.radians(elevation_deg)
    out = []
    for k in range(count):
        az = np.radians(front_deg) + 2 * np.pi * k / count
        d = np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])
        out.append(look_at(centre + dist * d, centre))
    return out


# ----------------------------------------------------------------------------------- clip folder
def motion_npz(bodies: list[dict], track: dict, fps: float, body_model: str) -> bytes:
    """The ``mimo motion`` .npz bytes of the shot's bodies (wire fields per body, as the add-on
    reads them) and camera track (``K``, ``R``, ``t``, ``width``, ``height``)."""
    from ..vendor.clip import BodyTrack, CameraTrack, MotionClip, save_npz

    tracks = []
    for i, b in enumerate(bodies):
        tracks.append(BodyTrack(global_orient=b["global_orient"], body_pose=b["body_pose"], transl=b["transl"],
                                betas=b.get("betas", np.zeros(0)), left_hand_pose=b.get("left_hand_pose"),
                                right_hand_pose=b.get("right_hand_pose"), model=body_model, name=f"body{i}"))
    clip = MotionClip(bodies=tracks, fps=float(fps))
    cam = CameraTrack(np.asarray(track["K"]), np.asarray(track["R"]), np.asarray(track["t"]),
                      int(track["width"]), int(track["height"]), fps=float(fps))
    buf = io.BytesIO()
    save_npz(buf, clip=clip, camera=cam)
    return buf.getvalue()


def partial_dir(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, f".{name}.partial")


def start_clip(out_dir: str, name: str) -> str:
    """A fresh ``.<name>.partial`` folder to write a clip into (a stale one is removed)."""
    tmp = partial_dir(out_dir, name)
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    return tmp


def save_array(folder: str, name: str, array: np.ndarray, ndim: int) -> None:
    """``<name>.npy`` as ``mimo.data.layout`` reads it (uint8, C order, no pickle)."""
    a = np.ascontiguousarray(array)
    if a.dtype != np.uint8 or a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d uint8 array, got {a.shape} {a.dtype}")
    np.save(os.path.join(folder, f"{name}.npy"), a, allow_pickle=False)


def finish_clip(out_dir: str, name: str, meta: dict, overwrite: bool, characters: list[str] = ()) -> str:
    """Check the arrays in ``.<name>.partial`` against each other, write ``meta.json`` (listing the
    reference images ``characters`` written there) and rename the folder to ``name`` (replacing
    an existing clip only with ``overwrite``). Returns the path."""
    tmp = partial_dir(out_dir, name)
    for c in characters:
        if not os.path.isfile(os.path.join(tmp, c)):
            raise ValueError(f"{c}: the reference image was not written")
    shapes = {}
    for key in ("frames", "codes", "scene", "occlusion"):
        path = os.path.join(tmp, f"{key}.npy")
        if os.path.exists(path):
            a = np.load(path, mmap_mode="r")
            shapes[key] = a.shape
    F, H, W = shapes["frames"][:3]
    for key, shape in shapes.items():
        want = (F, H, W) if key == "occlusion" else (F, H, W, 3)
        if shape != want:
            raise ValueError(f"{key}: expected {want} like the frames, got {shape}")
    meta = {"fps": 30.0, "source": "", "licence": "", "body_model": "open", **meta, "format": FORMAT,
            "version": VERSION, "num_frames": int(F), "width": int(W), "height": int(H),
            "characters": list(characters)}
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        f.write(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    final = os.path.join(out_dir, name)
    if os.path.exists(final):
        if not overwrite:
            raise ValueError(f"{final} exists (tick Overwrite to replace it)")
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def drop_partial(out_dir: str, name: str) -> None:
    shutil.rmtree(partial_dir(out_dir, name), ignore_errors=True)


def silhouette_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def character_overlap(frames: np.ndarray, scene: np.ndarray, codes: np.ndarray,
                      occlusion: np.ndarray | None = None, threshold: int = 8) -> float:
    """How well the rendered character sits on the body of the codes: the IoU of where the frames
    differ from the plate (by more than ``threshold`` levels) and where the codes have the body,
    less what the occlusion mask hides. About 0.85-0.95 for the bare body at 96-256 px (edges are
    antialiased); lower for loose clothing or cast shadows; far lower when the character does not
    follow the rig.

    Shapes: frames, scene, codes (F, H, W, 3) uint8; occlusion (F, H, W) uint8 or None
    """
    seen = np.abs(frames.astype(np.int16) - scene.astype(np.int16)).max(-1) > threshold
    body = codes.any(-1)
    if occlusion is not None:
        body &= occlusion < 128
    return silhouette_iou(seen, body)
