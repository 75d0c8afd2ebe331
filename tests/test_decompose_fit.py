"""The body fitter recovers a known motion: a walk is rendered with our own body model, camera
and rasterizer; the true 2-D keypoints (and the rendered depth) go in; the 3-D joints and the
camera must come back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mimo.body import load_body
from mimo.codes import render_codes
from mimo.decompose.fit import FitOptions, depth_points, fit_clip, to_motion
from mimo.decompose.skeleton import BodyRig, body_keypoints, keypoint_sources
from mimo.motion import CameraTrack, MotionClip

WALK = Path(__file__).parents[1] / "examples" / "motions" / "walk.npz"
FRAMES, W, H = 12, 256, 256
UP = np.array([0.0, 1.0, 0.0])


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def scene():
    body = load_body("open")
    track = MotionClip.load(WALK).bodies[0]
    cam = CameraTrack.look_at([1.2, 1.7, 4.2], [0.0, 0.9, 0.7], W, H, num_frames=FRAMES, fov_y_deg=55)
    p = {k: torch.as_tensor(v[:FRAMES], dtype=torch.float32) for k, v in track.params().items()}
    betas = torch.tensor([[0.5, -0.3, 0.2, 0.0, 0.0, 0.0]]).expand(FRAMES, 6)
    out = body(p["global_orient"], p["body_pose"], betas=betas, transl=p["transl"])
    _, mask, depth = render_codes(out.vertices, body.faces, torch.full((body.num_vertices, 3), 0.5),
                                  cam.K, cam.R, cam.t, W, H, return_mask=True, return_depth=True)
    joint_ids, face_ids = keypoint_sources(body)
    world_kp = body_keypoints(out.joints, out.vertices[:, torch.as_tensor(face_ids[:5])], joint_ids)
    uv, _ = cam.project(world_kp.double().numpy())
    R, t = cam.R[0], cam.t[0]
    joints_cam = out.joints[:, :22].double().numpy() @ R.T + t
    rng = np.random.default_rng(1)
    points = np.stack([depth_points(depth[f].numpy(), mask[f].numpy(), cam.K[0], 128, rng)
                       for f in range(FRAMES)])
    feet = out.joints[:, [7, 8, 10, 11]].double().numpy().reshape(-1, 3)
    height = (-R.T @ t)[1] - np.percentile(feet[:, 1], 2)
    return dict(body=body, cam=cam, uv=uv, joints_cam=joints_cam, points=points, height=height)


def _fit(scene, noise_px: float, keypoint_px: float):
    rng = np.random.default_rng(2)
    uv = scene["uv"] + rng.normal(0.0, noise_px, scene["uv"].shape) if noise_px else scene["uv"]
    kp = np.concatenate([uv, np.ones((FRAMES, 17, 1))], -1)
    return fit_clip(scene["body"], kp, scene["cam"].K[0], scene["points"],
                    FitOptions(keypoint_px=keypoint_px))


def _pitch(R: np.ndarray) -> float:
    return float(np.degrees(np.arcsin(R[2] @ UP)))  # camera forward (row 2 of R) against world up


def test_fit_recovers_joints_and_camera_from_true_keypoints_and_depth(scene):
    fit = _fit(scene, 0.0, 0.3)
    err = np.linalg.norm(fit.joints - scene["joints_cam"], axis=-1)
    assert err.mean() < 0.02, f"mean joint error {err.mean() * 100:.2f} cm"
    clip, cam = to_motion(scene["body"], fit, 30.0, W, H)
    # the world-space clip seen through the fitted camera is the camera-space fit (second path:
    # BodyModel.forward and CameraTrack, not the fitter's own skinning)
    p = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in clip.bodies[0].params().items()}
    world = scene["body"](**p).joints[:, :22].double().numpy()
    again = world @ cam.R[0].T + cam.t[0]
    assert np.abs(again - fit.joints).max() < 1e-4
    np.testing.assert_allclose(cam.K[0], scene["cam"].K[0])
    assert abs(_pitch(cam.R[0]) - _pitch(scene["cam"].R[0])) < 4.0
    assert abs(cam.R[0][0] @ UP) < 1e-9  # level camera: no roll
    height = (-cam.R[0].T @ cam.t[0])[1]
    assert abs(height - scene["height"]) < 0.25


def test_fit_with_two_pixel_noise_is_close_and_smooth(scene):
    fit = _fit(scene, 2.0, 2.0)
    err = np.linalg.norm(fit.joints - scene["joints_cam"], axis=-1)
    assert err.mean() < 0.04, f"mean joint error {err.mean() * 100:.2f} cm"
    acc = lambda j: np.linalg.norm(np.diff(j, 2, axis=0), axis=-1).mean()  # noqa: E731
    assert acc(fit.joints) < 1.5 * acc(scene["joints_cam"])  # no frame-to-frame jitter from the noise


def test_rig_poses_like_the_body_model():
    body = load_body("open")
    g = torch.randn(3, 3) * 0.5
    bp = torch.randn(3, 21, 3) * 0.3
    betas = torch.randn(3, 6)
    tr = torch.randn(3, 3)
    ref = body(g, bp, betas=betas, transl=tr)
    joints, verts = BodyRig(body).pose(g, bp, betas, tr, torch.arange(body.num_vertices))
    assert (ref.vertices - verts).abs().max() < 1e-5 and (ref.joints[:, :22] - joints).abs().max() < 1e-5
