"""Fit a body model to a clip's 2-D keypoints (and depth), all frames at once, SMPLify-style.

Unknowns: per frame the root rotation, the 21 body-joint rotations and the translation, in the
camera's frame (OpenCV: x right, y down, z forward; docs/CONVENTIONS.md); one shape (betas) for
the clip. Objective (every term a mean, so weights do not depend on the clip's length):

* reprojection of the COCO-17 keypoints (:mod:`mimo.decompose.skeleton`) through the pinhole
  camera ``K``, in units of the expected keypoint noise (``keypoint_px``) under a Geman-McClure
  robust loss (scale ``robust`` noise units), weighted by each keypoint's confidence;
* depth (optional): observed camera-space surface points of the person (depth map × mask,
  back-projected) to the tangent plane of their nearest body vertex (plus a little of the
  point-to-point distance), in units of ``depth_cm``, robust; the nearest vertex is
  re-associated every ``reassociate`` steps (ICP). This fixes scale and placement; without it,
  scale comes from the shape prior (a body of average size);
* pose prior (squared joint rotations away from a standing, arms-down pose), bend limits
  (knees and elbows do not bend backwards), shape prior (squared betas);
* temporal smoothness: squared acceleration of every joint (in units of ``accel_cm`` per
  frame²) and of the root rotation matrix.

Optimisation: (1) per frame, 8 candidate headings of an upright body are fitted to the torso and
face keypoints (rotation and translation only) and the best kept; (2) every unknown of every
frame jointly (Adam), with the pose prior relaxed halfway. Then the world frame is chosen:
Y up from the legs' mean direction and the direction of travel, the floor (y = 0) under the lowest foot point, the
first frame's pelvis above the origin, the camera looking along -Z (:func:`world_from_camera`); the camera becomes a
CameraTrack (world-to-camera R, t), the motion a MotionClip.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from mimo.decompose.skeleton import TORSO_AND_FACE, BodyRig, body_keypoints, keypoint_sources, rotation_matrix

# body_pose indices (joint index - 1) of the bend-limited joints
_L_KNEE, _R_KNEE, _L_ELBOW, _R_ELBOW = 3, 4, 17, 18
_FRONT = np.diag([1.0, -1.0, -1.0])  # an upright body facing the camera, in camera axes
_L_SHOULDER, _R_SHOULDER = 15, 16


def mean_pose() -> np.ndarray:
    """Start and prior mean of the body pose: standing, arms down (shoulders turned ∓1.2 rad
    about Z), everything else zero.

    Shapes: -> (21, 3)
    """
    pose = np.zeros((21, 3))
    pose[_L_SHOULDER, 2], pose[_R_SHOULDER, 2] = -1.2, 1.2
    return pose


@dataclasses.dataclass
class FitOptions:
    """Weights and schedule of the fit (defaults tuned on rendered clips, see tests)."""

    init_steps: int = 50
    steps: int = 250
    lr: float = 0.03
    keypoint_px: float = 2.0
    depth_cm: float = 1.0
    accel_cm: float = 1.0
    robust: float = 10.0
    w_keypoints: float = 1.0
    w_depth: float = 1.0
    w_pose: float = 20.0
    w_pose_final: float = 2.0
    w_limits: float = 1e4
    w_shape: float = 5.0
    w_smooth: float = 0.5
    w_smooth_rot: float = 50.0
    reassociate: int = 10
    w_turn: float = 20.0
    depth_vertices: int = 1000
    tangential: float = 0.1
    min_confidence: float = 0.2


@dataclasses.dataclass
class FitResult:
    """Camera-frame fit and its world-frame form.

    Shapes: global_orient (F, 3), body_pose (F, 21, 3), transl (F, 3) camera frame;
        betas (K,); joints (F, J, 3) camera frame; keypoints (F, 17, 3) camera frame;
        world_from_camera (3, 4): x_world = C x_cam + c0
    """

    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    betas: np.ndarray
    joints: np.ndarray
    keypoints: np.ndarray
    K: np.ndarray
    world_from_camera: np.ndarray
    losses: dict


def gmof(x2: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure of a squared residual: sigma² x² / (sigma² + x²)."""
    s2 = sigma * sigma
    return s2 * x2 / (s2 + x2)


def depth_points(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, n: int, rng) -> np.ndarray:
    """Back-project up to ``n`` masked pixel centres with finite positive depth to camera space
    (NaN rows where fewer exist).

    Shapes: depth (H, W) metres along z, mask (H, W) bool, K (3, 3) -> (n, 3)
    """
    ys, xs = np.nonzero(mask & np.isfinite(depth) & (depth > 0))
    out = np.full((n, 3), np.nan)
    if len(xs) == 0:
        return out
    pick = rng.choice(len(xs), size=min(n, len(xs)), replace=False)
    u, v, z = xs[pick] + 0.5, ys[pick] + 0.5, depth[ys[pick], xs[pick]]
    x = (u - K[0, 2] - K[0, 1] * (v - K[1, 2]) / K[1, 1]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    out[:len(pick)] = np.stack([x, y, z], 1)
    return out


def _project(K: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    z = p[..., 2:3].clamp_min(1e-3)
    return (p @ K.T)[..., :2] / z


def fit_clip(body, keypoints: np.ndarray, K: np.ndarray, points: np.ndarray | None = None,
             options: FitOptions | None = None, device: str | torch.device = "cpu",
             progress: Callable[[int, int], None] | None = None, seed: int = 0) -> FitResult:
    """Fit ``body`` to a clip.

    Args:
        keypoints: COCO-17 pixel positions (pixel centres at +0.5, docs/CONVENTIONS.md) and
            confidence in [0, 1] per frame.
        K: the camera intrinsics (pixels).
        points: observed surface points of the person in camera space (metres; NaN rows are
            ignored), e.g. from :func:`depth_points`; None fits without depth.
        progress: ``progress(step, total)``.

    Shapes: keypoints (F, 17, 3), K (3, 3), points (F, N, 3) -> FitResult
    """
    opt = options or FitOptions()
    torch.manual_seed(seed)
    dev = torch.device(device)
    dt = torch.float32
    body = body.to(dev)
    rig = BodyRig(body)
    kp = torch.as_tensor(np.asarray(keypoints, np.float64), dtype=dt, device=dev)
    F = kp.shape[0]
    if kp.shape[1:] != (17, 3):
        raise ValueError(f"keypoints: expected (F, 17, 3), got {tuple(kp.shape)}")
    uv, conf = kp[..., :2], kp[..., 2] * (kp[..., 2] >= opt.min_confidence)
    Kt = torch.as_tensor(np.asarray(K, np.float64), dtype=dt, device=dev)
    joint_ids, face_ids = keypoint_sources(body)
    rng = np.random.default_rng(seed)
    V = body.num_vertices
    extra = np.sort(rng.choice(V, size=min(opt.depth_vertices, V), replace=False))
    vids = torch.as_tensor(np.concatenate([face_ids[:5], extra]), device=dev)
    pts = None
    if points is not None:
        pts = torch.as_tensor(np.asarray(points, np.float64), dtype=dt, device=dev)
        valid = torch.isfinite(pts).all(-1)
        pts = torch.nan_to_num(pts)
        if not bool(valid.any()):
            pts = None
    nb = body.num_betas

    def kp_loss(kp3, which=None):
        pred = _project(Kt, kp3)
        r2 = (((pred - uv) / opt.keypoint_px) ** 2).sum(-1)
        w = conf if which is None else conf[:, which]
        if which is not None:
            r2 = r2[:, which] if r2.shape[1] == 17 else r2
        return (w * gmof(r2, opt.robust)).sum(-1) / w.sum(-1).clamp_min(1e-6)

    # ---------------- (1) heading candidates, torso + face only
    which = torch.as_tensor(TORSO_AND_FACE, device=dev)
    yaws = np.radians(np.arange(8) * 45.0)
    cand = []
    for a in yaws:
        Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        cand.append(_matrix_to_axis_angle(_FRONT @ Ry))
    C = len(cand)
    go = torch.as_tensor(np.repeat(np.stack(cand)[:, None], F, 1).reshape(C * F, 3), dtype=dt,
                         device=dev).clone().requires_grad_(True)
    transl0 = _initial_translation(uv, conf, Kt, pts if pts is not None else None,
                                   valid if pts is not None else None)
    tr = transl0.repeat(C, 1).clone().requires_grad_(True)
    prior = torch.as_tensor(mean_pose(), dtype=dt, device=dev)
    start_pose = prior.expand(C * F, 21, 3)
    zero_betas = torch.zeros(C * F, nb, dtype=dt, device=dev)
    adam = torch.optim.Adam([go, tr], lr=opt.lr * 2)
    uv_c, conf_c = uv.repeat(C, 1, 1), conf.repeat(C, 1)
    if pts is not None:
        pts_c, valid_c = pts.repeat(C, 1, 1), valid.repeat(C, 1)
    total = opt.init_steps + opt.steps
    nearest = None
    for step in range(opt.init_steps):
        adam.zero_grad()
        j, v, nrm = rig.pose(go, start_pose, zero_betas, tr, vids, normals=True)
        k3 = body_keypoints(j, v, joint_ids)[:, which]
        r2 = (((_project(Kt, k3) - uv_c[:, which]) / opt.keypoint_px) ** 2).sum(-1)
        w = conf_c[:, which]
        per = (w * gmof(r2, opt.robust)).sum(-1) / w.sum(-1).clamp_min(1e-6)
        if pts is not None:
            if nearest is None or step % opt.reassociate == 0:
                nearest = _associate(pts_c, v[:, 5:])
            per = per + opt.w_depth * _depth_term(v[:, 5:], nrm[:, 5:], pts_c, valid_c, nearest, opt)
        per.sum().backward()
        adam.step()
        if progress is not None and step % 10 == 0:
            progress(step, total)
    with torch.no_grad():
        R = rotation_matrix(go.detach()).reshape(C, F, 3, 3)
        pair = None
        if F > 1:  # turning between frames costs opt.w_turn per radian²
            cos = ((torch.einsum("afij,bfij->fab", R[:, :-1], R[:, 1:]) - 1) / 2).clamp(-1, 1)
            pair = opt.w_turn * torch.arccos(cos) ** 2
        best = _viterbi(per.detach().reshape(C, F).T, pair)
        idx = best * F + torch.arange(F, device=dev)
        go0, tr0 = go.detach()[idx], tr.detach()[idx]

    # ---------------- (2) everything, all frames jointly
    go = go0.clone().requires_grad_(True)
    tr = tr0.clone().requires_grad_(True)
    bp = prior.repeat(F, 1, 1).requires_grad_(True)
    betas = torch.zeros(1, nb, dtype=dt, device=dev, requires_grad=True)
    adam = torch.optim.Adam([{"params": [go, bp, betas], "lr": opt.lr},
                             {"params": [tr], "lr": opt.lr / 3}])
    nearest = None
    losses = {}
    for step in range(opt.steps):
        w_pose = opt.w_pose if step < opt.steps // 2 else opt.w_pose_final
        adam.zero_grad()
        b = betas.expand(F, nb)
        j, v, nrm = rig.pose(go, bp, b, tr, vids, normals=True)
        k3 = body_keypoints(j, v, joint_ids)
        terms = {"keypoints": opt.w_keypoints * kp_loss(k3).mean()}
        if pts is not None:
            if nearest is None or step % opt.reassociate == 0:
                nearest = _associate(pts, v[:, 5:])
            terms["depth"] = opt.w_depth * (_depth_term(v[:, 5:], nrm[:, 5:], pts, valid, nearest, opt)
                                            * valid.sum(1)).sum() / valid.sum()
        terms["pose"] = w_pose * ((bp - prior) ** 2).sum((1, 2)).mean() / 21
        lim = (torch.relu(-bp[:, [_L_KNEE, _R_KNEE], 0]) ** 2).sum(-1) + \
            torch.relu(bp[:, _L_ELBOW, 1]) ** 2 + torch.relu(-bp[:, _R_ELBOW, 1]) ** 2
        terms["limits"] = opt.w_limits * lim.mean()
        terms["shape"] = opt.w_shape * (betas ** 2).mean()
        if F >= 3:
            acc = (j[2:] - 2 * j[1:-1] + j[:-2]) * (100.0 / opt.accel_cm)
            terms["smooth"] = opt.w_smooth * (acc ** 2).sum(-1).mean()
            Rg = rotation_matrix(go)
            terms["smooth_rot"] = opt.w_smooth_rot * ((Rg[2:] - 2 * Rg[1:-1] + Rg[:-2]) ** 2).sum((1, 2)).mean()
        loss = sum(terms.values())
        loss.backward()
        adam.step()
        if progress is not None and step % 10 == 0:
            progress(opt.init_steps + step, total)
        losses = {k: float(x.detach()) for k, x in terms.items()}
    if progress is not None:
        progress(total, total)
    with torch.no_grad():
        b = betas.expand(F, nb)
        j, v = rig.pose(go, bp, b, tr, vids[:5])
        k3 = body_keypoints(j, v, joint_ids)
        cw = world_from_camera(j.cpu().double().numpy())
    out = lambda x: x.detach().cpu().double().numpy()  # noqa: E731
    return FitResult(global_orient=out(go), body_pose=out(bp), transl=out(tr), betas=out(betas)[0],
                     joints=out(j), keypoints=out(k3), K=np.asarray(K, np.float64),
                     world_from_camera=cw, losses=losses)


def _associate(pts: torch.Tensor, verts: torch.Tensor) -> torch.Tensor:
    """Index of the nearest vertex of each observed point. Shapes: (B, N, 3), (B, n, 3) -> (B, N)"""
    with torch.no_grad():
        return torch.cdist(pts, verts).argmin(-1)


def _depth_term(verts, normals, pts, valid, nearest, opt) -> torch.Tensor:
    """Per-frame mean robust distance of the observed points to the tangent planes of their
    associated vertices (plus ``opt.tangential`` of the point-to-point distance), in units of
    ``opt.depth_cm``.

    Shapes: verts, normals (B, n, 3), pts (B, N, 3), valid (B, N), nearest (B, N) -> (B,)
    """
    pick = nearest[..., None].expand(-1, -1, 3)
    diff = (torch.gather(verts, 1, pick) - pts) * (100.0 / opt.depth_cm)
    normal = torch.gather(normals, 1, pick)
    d2 = (diff * normal).sum(-1) ** 2 + opt.tangential * (diff ** 2).sum(-1)
    return (gmof(d2, opt.robust) * valid).sum(1) / valid.sum(1).clamp_min(1)


def _viterbi(unary: torch.Tensor, pair: torch.Tensor | None) -> torch.Tensor:
    """The candidate per frame minimising Σ unary + Σ pair (dynamic programming).

    Shapes: unary (F, C), pair (F-1, C, C) [from frame f's candidate a to f+1's b] -> (F,) long
    """
    F, C = unary.shape
    cost = unary[0].clone()
    back = []
    for f in range(1, F):
        total = cost[:, None] + pair[f - 1]  # (a, b)
        cost, arg = total.min(0)
        cost = cost + unary[f]
        back.append(arg)
    best = [int(cost.argmin())]
    for arg in reversed(back):
        best.append(int(arg[best[-1]]))
    return torch.tensor(best[::-1], device=unary.device)


def _initial_translation(uv, conf, K, pts, valid) -> torch.Tensor:
    """Per-frame translation guess: the hips' mid-point back-projected at the observed depth
    (median of the surface points + 0.1 m), or at the depth where a 0.5 m torso has the
    observed height in pixels.

    Shapes: -> (F, 3)
    """
    F = uv.shape[0]
    w = conf[:, [5, 6, 11, 12]]
    torso = uv[:, [5, 6, 11, 12]]
    wsum = w.sum(1, keepdim=True).clamp_min(1e-6)
    centre = (torso * w[..., None]).sum(1) / wsum
    hips = (uv[:, 11] + uv[:, 12]) / 2
    shoulders = (uv[:, 5] + uv[:, 6]) / 2
    ok = (conf[:, [5, 6, 11, 12]] > 0).all(1)
    height_px = torch.where(ok, (shoulders - hips).norm(dim=-1), torch.full((F,), float("nan"), device=uv.device))
    med = torch.nanmedian(height_px) if bool(ok.any()) else torch.tensor(100.0)
    focal = (K[0, 0] + K[1, 1]) / 2
    z = torch.full((F,), float(focal * 0.5 / med.clamp_min(1.0)), device=uv.device)
    if pts is not None:
        zs = torch.where(valid, pts[..., 2], torch.full_like(pts[..., 2], float("nan")))
        zmed = torch.nanmedian(zs, dim=1).values + 0.1
        z = torch.where(torch.isfinite(zmed), zmed, z)
    x = (centre[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (centre[:, 1] - K[1, 2]) / K[1, 1] * z
    return torch.stack([x, y, z], 1)


def _matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    from mimo.motion.rotations import matrix_to_axis_angle

    return matrix_to_axis_angle(np.asarray(R, np.float64))


def world_from_camera(joints: np.ndarray, level: bool = True, floor_cm: float = 1.0,
                      prior_deg: float = 5.0) -> np.ndarray:
    """The world frame of a camera-frame fit.

    Up: the mean direction from the ankles' mid-point to the pelvis (legs swing about it); with
    ``level`` (the camera has no roll, as on a tripod or a steady hand), refined by the tilt
    about the camera's x axis that keeps the lowest toe of every frame at one height (feet in
    contact lie on the floor; spread ``floor_cm``), within a Gaussian prior of ``prior_deg``
    around the legs' direction. The floor (y = 0) lies at the 2nd percentile of the ankle and
    foot joints' heights; the first frame's pelvis stands above the origin; the camera looks
    along -Z (its forward axis projected on the floor). Assumes an upright person on level
    ground; give the camera instead when that does not hold.

    Shapes: joints (F, 22, 3) camera frame -> (3, 4) [C | c0] with x_world = C x_cam + c0
    """
    pelvis = joints[:, 0]
    legs = (pelvis - (joints[:, 7] + joints[:, 8]) / 2).mean(0)
    up = legs / np.linalg.norm(legs)
    if level:  # tilt about the camera's x axis only: up = (0, -cos a, -sin a)
        a0 = np.arctan2(-up[2], -up[1])
        feet = joints[:, [10, 11]]  # the toe-base joints rest on the floor in contact
        angles = a0 + np.radians(np.linspace(-20, 20, 401))
        ups = np.stack([np.zeros_like(angles), -np.cos(angles), -np.sin(angles)], 1)
        h = np.einsum("fkc,ac->afk", feet, ups).min(-1)  # (A, F) lowest toe per frame
        cost = h.var(1) / floor_cm ** 2 * 1e4 + (np.degrees(angles - a0) / prior_deg) ** 2
        a = angles[np.argmin(cost)]
        up = np.array([0.0, -np.cos(a), -np.sin(a)])
    fwd = np.array([0.0, 0.0, 1.0]) - up[2] * up
    fwd /= np.linalg.norm(fwd)
    z = -fwd
    x = np.cross(up, z)
    C = np.stack([x, up, z])  # rows: world axes in camera coordinates
    floor = np.percentile(joints[:, [7, 8, 10, 11]].reshape(-1, 3) @ up, 2)
    p = C @ pelvis[0]
    c0 = -np.array([p[0], floor, p[2]])
    return np.concatenate([C, c0[:, None]], 1)


def to_motion(body, fit: FitResult, fps: float, width: int, height: int):
    """The fit in world space: a one-body MotionClip and the CameraTrack that sees it.

    Rotating a body about the world origin by C: the root rotation becomes C·R and the
    translation C (p + transl) + c0 - p, with p the shaped rest pelvis (the root joint LBS
    rotates about).

    Shapes: -> MotionClip (F frames), CameraTrack (F frames, K of ``fit``)
    """
    from mimo.motion import BodyTrack, CameraTrack, MotionClip
    from mimo.motion.rotations import axis_angle_to_matrix as aa2m
    from mimo.motion.rotations import matrix_to_axis_angle

    C, c0 = fit.world_from_camera[:, :3], fit.world_from_camera[:, 3]
    betas = fit.betas
    p = (body.rest_joints[0].detach().cpu().double().numpy()
         + body.joint_shapedirs[0].detach().cpu().double().numpy() @ betas)
    go = matrix_to_axis_angle(C @ aa2m(fit.global_orient))
    transl = (p + fit.transl) @ C.T + c0 - p
    F = len(go)
    track = BodyTrack(global_orient=go, body_pose=fit.body_pose, transl=transl, betas=betas,
                      model=body.kind, name="decomposed")
    clip = MotionClip(fps=float(fps), bodies=[track]).validate()
    camera = CameraTrack.static(fit.K, C.T, -C.T @ c0, width, height, F, fps=float(fps))
    return clip, camera
