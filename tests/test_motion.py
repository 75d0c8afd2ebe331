"""MotionClip / CameraTrack: file format, validation, resampling, cameras, AMASS and HMR2 readers,
rotation helpers against scipy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from mimo.body import load_body
from mimo.motion import (
    BodyTrack,
    CameraTrack,
    MotionClip,
    load_npz,
    read_amass,
    read_smpl_params,
    save_npz,
)
from mimo.motion import rotations as rot


def _clip(F=10, seed=0, bodies=1, fps=30.0) -> MotionClip:
    g = np.random.default_rng(seed)
    tracks = [BodyTrack(global_orient=g.normal(size=(F, 3)) * 0.5,
                        body_pose=g.normal(size=(F, 21, 3)) * 0.3,
                        transl=g.normal(size=(F, 3)), betas=g.normal(size=6),
                        left_hand_pose=g.normal(size=(F, 15, 3)) * 0.2, model="open",
                        name=f"actor{i}") for i in range(bodies)]
    return MotionClip(fps=fps, bodies=tracks).validate()


# ------------------------------------------------------------------------------- rotations
def test_rotation_conversions_match_scipy():
    g = np.random.default_rng(1)
    v = np.concatenate([g.normal(size=(100, 3)) * 1.5, g.normal(size=(5, 3)) * 1e-10,
                        np.array([[np.pi - 1e-9, 0, 0], [0, 0, np.pi]])])
    ref = Rotation.from_rotvec(v)
    np.testing.assert_allclose(rot.axis_angle_to_matrix(v), ref.as_matrix(), atol=1e-12)
    q = rot.matrix_to_quaternion(ref.as_matrix())
    q_ref = ref.as_quat()[:, [3, 0, 1, 2]]
    q_ref *= np.sign(q_ref[:, :1] + 1e-300)
    np.testing.assert_allclose(np.abs(np.sum(q * q_ref, -1)), 1.0, atol=1e-12)
    back = rot.matrix_to_axis_angle(ref.as_matrix())
    np.testing.assert_allclose(rot.axis_angle_to_matrix(back), ref.as_matrix(), atol=1e-9)
    np.testing.assert_allclose(rot.quaternion_to_matrix(q), ref.as_matrix(), atol=1e-12)
    e = g.uniform(-180, 180, size=(20, 3))
    np.testing.assert_allclose(rot.euler_to_matrix(e, "ZXY"),
                               Rotation.from_euler("ZXY", e, degrees=True).as_matrix(), atol=1e-12)


def test_slerp_matches_scipy():
    g = np.random.default_rng(2)
    r = Rotation.from_rotvec(g.normal(size=(2, 3)))
    ts = np.linspace(0, 1, 7)
    ref = Slerp([0, 1], r)(ts).as_matrix()
    q = rot.matrix_to_quaternion(r.as_matrix())
    ours = rot.quaternion_to_matrix(rot.slerp(q[0], q[1], ts))
    np.testing.assert_allclose(ours, ref, atol=1e-12)


# ------------------------------------------------------------------------------- clip files
def test_clip_and_camera_round_trip(tmp_path):
    clip = _clip(bodies=2)
    cam = CameraTrack.look_at([0, 1, 4], [0, 1, 0], 640, 480, num_frames=10)
    path = tmp_path / "shot.npz"
    save_npz(path, clip=clip, camera=cam)
    clip2, cam2 = load_npz(path)
    assert clip2.fps == 30.0 and clip2.num_frames == 10 and len(clip2.bodies) == 2
    for a, b in zip(clip.bodies, clip2.bodies):
        np.testing.assert_allclose(a.body_pose, b.body_pose, atol=1e-6)
        np.testing.assert_allclose(a.transl, b.transl, atol=1e-12)
        np.testing.assert_allclose(a.betas, b.betas, atol=1e-6)
        assert b.right_hand_pose is None and b.left_hand_pose.shape == (10, 15, 3)
        assert (b.model, b.name) == (a.model, a.name)
    np.testing.assert_allclose(cam2.K, cam.K)
    assert (cam2.width, cam2.height) == (640, 480)
    assert MotionClip.load(path).num_frames == 10
    with np.load(path, allow_pickle=False) as d:  # documented keys, no pickle needed
        assert str(d["format"]) == "mimo.motion" and d["clip.body1.body_pose"].shape == (10, 21, 3)


@pytest.mark.parametrize("mutate, field", [
    (lambda c: setattr(c.bodies[0], "body_pose", np.zeros((10, 22, 3))), "body0.body_pose"),
    (lambda c: setattr(c.bodies[0], "transl", np.zeros((9, 3))), "body0.transl"),
    (lambda c: setattr(c.bodies[0], "global_orient", np.full((10, 3), np.nan)),
     "body0.global_orient"),
    (lambda c: setattr(c.bodies[0], "model", "mano"), "body0.model"),
    (lambda c: setattr(c.bodies[0], "left_hand_pose", np.zeros((10, 14, 3))),
     "body0.left_hand_pose"),
    (lambda c: setattr(c, "fps", 0), "fps"),
    (lambda c: setattr(c, "bodies", []), "bodies"),
    (lambda c: setattr(c.bodies[0], "betas", np.array(["a"])), "body0.betas"),
])
def test_clip_validation_names_the_field(mutate, field):
    clip = _clip()
    mutate(clip)
    with pytest.raises(ValueError, match=field):
        clip.validate()


def test_second_body_with_other_frame_count_is_refused():
    clip = _clip(bodies=2)
    clip.bodies[1] = _clip(F=7).bodies[0]
    with pytest.raises(ValueError, match="body1"):
        clip.validate()


def test_loading_a_tampered_file_fails_validation(tmp_path):
    path = tmp_path / "x.npz"
    _clip().save(path)
    with np.load(path) as d:
        data = dict(d)
    data["clip.body0.transl"] = data["clip.body0.transl"][:5]
    np.savez(path, **data)
    with pytest.raises(ValueError, match="body0.transl"):
        MotionClip.load(path)
    np.savez(path, something=np.zeros(2))
    with pytest.raises(ValueError, match="not a mimo.motion file"):
        MotionClip.load(path)


# ------------------------------------------------------------------------------ resampling
def test_resample_slerps_rotations_and_lerps_translation():
    clip = _clip(F=11, fps=30.0)
    half = clip.resample(15.0)
    assert half.num_frames == 6 and half.fps == 15.0
    np.testing.assert_allclose(half.bodies[0].body_pose, clip.bodies[0].body_pose[::2], atol=1e-9)
    double = clip.resample(60.0)
    assert double.num_frames == 21
    b, d = clip.bodies[0], double.bodies[0]
    np.testing.assert_allclose(d.transl[1], (b.transl[0] + b.transl[1]) / 2, atol=1e-12)
    ref = Slerp([0, 1], Rotation.from_rotvec(b.body_pose[:2, 4]))([0.5]).as_matrix()[0]
    np.testing.assert_allclose(rot.axis_angle_to_matrix(d.body_pose[1, 4]), ref, atol=1e-9)
    assert d.left_hand_pose.shape == (21, 15, 3) and d.right_hand_pose is None
    np.testing.assert_allclose(d.betas, b.betas)


def test_camera_resample():
    cam = CameraTrack.look_at([0, 1, 4], [0, 1, 0], 64, 48, num_frames=3)
    cam.t[2] += [1.0, 0.0, 0.0]
    out = cam.resample(60.0)
    assert out.num_frames == 5
    np.testing.assert_allclose(out.t[3], (cam.t[1] + cam.t[2]) / 2)


# ------------------------------------------------------------------------------- cameras
def test_look_at_projects_target_to_image_centre_with_half_pixel_convention():
    cam = CameraTrack.look_at([0.0, 1.0, 5.0], [0.0, 1.0, 0.0], 640, 480, fov_y_deg=40.0)
    uv, depth = cam.project(np.array([[[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0]]]))
    np.testing.assert_allclose(uv[0, 0], [320.0, 240.0])  # centre of the image, not 319.5
    assert depth[0, 0] == pytest.approx(5.0)
    assert uv[0, 1, 1] < 240.0  # world up is image up (v decreases)
    assert uv[0, 2, 0] > 320.0  # +X world is to the right when looking down -Z
    f = 240.0 / np.tan(np.radians(20.0))
    np.testing.assert_allclose(uv[0, 1, 1], 240.0 - f * 1.0 / 5.0)


@pytest.mark.parametrize("kwargs, field", [
    (dict(R=np.tile(np.diag([1.0, 1.0, 2.0]), (2, 1, 1))), "camera.R"),
    (dict(K=np.zeros((2, 3, 3))), "camera.K"),
    (dict(t=np.zeros((3, 3))), "camera.t"),
    (dict(width=0), "camera.width"),
    (dict(height=10.5), "camera.height"),
])
def test_camera_validation(kwargs, field):
    K = np.tile(np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]), (2, 1, 1))
    args = dict(K=K, R=np.tile(np.eye(3), (2, 1, 1)), t=np.zeros((2, 3)), width=64, height=48)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        CameraTrack(**args).validate()


# ------------------------------------------------------------------------------- readers
def test_amass_reader_converts_z_up_to_y_up(tmp_path):
    g = np.random.default_rng(4)
    F = 8
    poses = g.normal(size=(F, 156)) * 0.3
    trans = g.normal(size=(F, 3))
    path = tmp_path / "walk_poses.npz"
    np.savez(path, poses=poses, trans=trans, betas=g.normal(size=16), mocap_framerate=120.0,
             gender=np.array("neutral"), extra=np.array([{"pickled": 1}], dtype=object))
    clip = read_amass(path)
    b = clip.bodies[0]
    assert clip.fps == 120.0 and b.model == "smplh" and b.betas.shape == (16,)
    np.testing.assert_allclose(b.body_pose.reshape(F, -1), poses[:, 3:66], atol=1e-12)
    np.testing.assert_allclose(b.left_hand_pose.reshape(F, -1), poses[:, 66:111], atol=1e-12)
    # the same mesh, seen in a Y-up world: open body (pelvis at origin) posed both ways
    body = load_body("open", dtype=torch.float64)
    zup = body(torch.from_numpy(poses[:, :3]), torch.from_numpy(poses[:, 3:66].reshape(F, 21, 3)),
               transl=torch.from_numpy(trans)).vertices.numpy()
    yup = body(torch.from_numpy(b.global_orient), torch.from_numpy(b.body_pose),
               transl=torch.from_numpy(b.transl)).vertices.numpy()
    Q = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    np.testing.assert_allclose(yup, zup @ Q.T, atol=1e-9)
    np.savez(path, poses=poses[:, :100], trans=trans, mocap_framerate=120.0)
    with pytest.raises(ValueError, match="poses"):
        read_amass(path)


def test_hmr2_reader_rotation_matrices_and_camera():
    g = np.random.default_rng(5)
    F = 4
    go = Rotation.from_rotvec(g.normal(size=(F, 3)))
    bp = g.normal(size=(F, 23, 3)) * 0.3
    cam_t = np.array([[0.1, 0.2, 8.0]] * F)
    data = {"global_orient": go.as_matrix()[:, None],
            "body_pose": Rotation.from_rotvec(bp.reshape(-1, 3)).as_matrix().reshape(F, 23, 3, 3),
            "betas": g.normal(size=(F, 10)), "pred_cam_t": cam_t}
    clip, cam = read_smpl_params(data, fps=25.0, width=512, height=256)
    b = clip.bodies[0]
    assert b.model == "smpl" and b.body_pose.shape == (F, 23, 3) and clip.fps == 25.0
    np.testing.assert_allclose(b.body_pose, bp, atol=1e-9)
    # the body origin seen by the returned camera lands where HMR2's camera puts it
    uv, depth = cam.project(b.transl[:, None])
    f = 5000.0 / 256.0 * 512
    np.testing.assert_allclose(uv[:, 0], np.stack([f * cam_t[:, 0] / 8 + 256,
                                                   f * cam_t[:, 1] / 8 + 128], -1), atol=1e-9)
    np.testing.assert_allclose(depth[:, 0], 8.0)
    with pytest.raises(ValueError, match="body_pose"):
        read_smpl_params({"global_orient": data["global_orient"], "body_pose": np.zeros((F, 5))})


def test_hmr2_reader_accepts_per_frame_dicts():
    g = np.random.default_rng(6)
    frames = [{"global_orient": Rotation.from_rotvec(g.normal(size=3)).as_matrix()[None],
               "body_pose": np.tile(np.eye(3), (23, 1, 1)), "betas": np.zeros(10),
               "pred_cam_t": np.array([0.0, 0.0, 5.0])} for _ in range(3)]
    clip, cam = read_smpl_params(frames)
    assert clip.num_frames == 3 and cam is None
    np.testing.assert_allclose(
        rot.axis_angle_to_matrix(clip.bodies[0].global_orient[1]),
        np.diag([1.0, -1.0, -1.0]) @ frames[1]["global_orient"][0], atol=1e-9)
