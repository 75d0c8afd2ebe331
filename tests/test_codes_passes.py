"""mimo export / render_passes: depth, normals, mask and keypoints of a known motion, checked
against independent geometry (back-projected depth lies on the posed body, normals face the
camera, keypoints are the projected joints)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mimo.body import load_body
from mimo.codes.keypoints import BODY_25
from mimo.codes.passes import render_passes
from mimo.codes.render import auto_camera_track
from mimo.motion import load_npz

WALK = "examples/motions/walk.npz"


@pytest.fixture(scope="module")
def shot():
    body = load_body("open")
    from mimo.motion.cli import take_frames

    clip, _ = load_npz(WALK)
    clip, _ = take_frames(clip, None, slice(0, 3))
    camera = auto_camera_track(clip, body, 96, 128)
    passes = render_passes(clip, camera, body, (96, 128))
    return body, clip, passes


def _posed(body, clip, f):
    params = {k: torch.as_tensor(np.ascontiguousarray(v[f:f + 1]), dtype=torch.float32)
              for k, v in clip.bodies[0].params().items()}
    with torch.no_grad():
        out = body(**params)
    return out.vertices[0].double().numpy(), out.joints[0].double().numpy()


def test_depth_back_projects_onto_the_posed_body(shot):
    from scipy.spatial import cKDTree

    body, clip, p = shot
    for f in (0, 2):
        verts, _ = _posed(body, clip, f)
        v, u = np.nonzero(p["mask"][f])
        assert len(u) > 200
        ray = np.linalg.inv(p["K"][f]) @ np.stack([u + 0.5, v + 0.5, np.ones_like(u)]).astype(np.float64)
        cam = ray * p["depth"][f][v, u]
        world = (p["R"][f].T @ (cam - p["t"][f][:, None])).T
        gap, _ = cKDTree(verts).query(world)
        assert np.median(gap) < 0.01 and gap.max() < 0.05  # on the surface, between vertices
        assert (p["depth"][f][~p["mask"][f]] == 0).all()


def test_normals_are_unit_and_face_the_camera(shot):
    _, _, p = shot
    m = p["mask"][0]
    n = p["normal"][0][m]
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    v, u = np.nonzero(m)
    ray = (np.linalg.inv(p["K"][0]) @ np.stack([u + 0.5, v + 0.5, np.ones_like(u)])).T
    facing = (n * ray).sum(1) < 0
    assert facing.mean() > 0.95  # outward normals of the visible surface point back at the camera
    assert (p["normal"][0][~m] == 0).all()


def test_keypoints_are_the_projected_joints(shot):
    from mimo.codes.keypoints import openpose_frame

    body, clip, p = shot
    _, joints = _posed(body, clip, 1)
    frame = openpose_frame(p["joints"][1], p["K"][1], p["R"][1], p["t"][1], p["width"], p["height"])
    kp = np.array(frame["people"][0]["pose_keypoints_2d"]).reshape(25, 3)
    names = list(body.joint_names)
    for i, name in enumerate(BODY_25):
        if not name:
            assert kp[i, 2] == 0
            continue
        c = p["R"][1] @ joints[names.index(name)] + p["t"][1]
        uv = (p["K"][1] @ c)[:2] / c[2] - 0.5
        np.testing.assert_allclose(kp[i, :2], uv, atol=1e-6)
        assert kp[i, 2] == 1.0


def test_export_command_writes_the_passes_and_refuses_a_full_folder(tmp_path, capsys):
    from mimo.cli import main

    out = tmp_path / "passes"
    args = ["export", "--motion", WALK, "--size", "64x64", "--frames", "0:3", "--out", str(out),
            "--device", "cpu", "--quiet"]
    assert main(args) == 0
    with np.load(out / "shot.npz") as shot:
        assert shot["K"].shape == (3, 3, 3) and shot["body0_body_pose"].shape == (3, 21, 3)
        assert int(shot["width"]) == 64 and str(shot["body_model"]) == "open"
    assert np.load(out / "depth.npy").shape == (3, 64, 64)
    assert np.load(out / "normal.npy").shape == (3, 64, 64, 3)
    frame = json.loads((out / "keypoints" / "frame_00002.json").read_text())
    assert len(frame["people"][0]["pose_keypoints_2d"]) == 75
    assert sorted(p.name for p in (out / "mask").iterdir()) == [f"frame_0000{i}.png" for i in range(3)]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "not empty" in err
    assert main(args + ["--overwrite"]) == 0
