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


#: what both mimo export and the add-on's Export Passes write into their folder
EXPORT_ENTRIES = ["depth", "depth.npy", "keypoints", "mask", "normal", "normal.npy", "shot.npz"]


def _check_pass_images(out, depth, normal):
    """depth/ (16-bit grey, mm) and normal/ (8-bit RGB view-space normal map) read back by PIL."""
    from PIL import Image

    for i in range(len(depth)):
        with Image.open(out / "depth" / f"frame_{i:05d}.png") as im:
            assert im.mode.startswith("I") and im.info.get("transparency") is None
            mm = np.array(im).astype(np.int64)
        assert np.array_equal(mm, np.round(depth[i].astype(np.float64) * 1000).astype(np.int64))
        with Image.open(out / "normal" / f"frame_{i:05d}.png") as im:
            assert im.mode == "RGB"
            rgb = np.array(im).astype(np.float64)
        seen = normal[i].any(axis=-1)
        assert seen.sum() > 100 and not rgb[~seen].any()  # black where nothing is
        view = rgb[seen] / 127.5 - 1.0  # x right, y up, z toward the camera
        np.testing.assert_allclose(view, normal[i][seen] * [1, -1, -1], atol=1 / 127.5)
        assert np.median(rgb[seen][:, 2]) > 200  # the body faces the camera: blue


def test_pass_images_encode_16_bit_depth_and_8_bit_normals(tmp_path):
    from PIL import Image

    from mimo.codes.pass_images import write_pass_images

    depth = np.array([[[0.0, 1.2344], [70.0, 0.0004]]], np.float32)  # (70 m: beyond 16 bits of mm)
    normal = np.zeros((1, 2, 2, 3), np.float32)
    normal[0, 0, 1] = [0, 0, -1]  # facing the camera
    normal[0, 1, 0] = [1, 0, 0]  # right
    normal[0, 1, 1] = [0, -1, 0]  # up (OpenCV y points down)
    assert write_pass_images(str(tmp_path), depth, normal) == 1
    with Image.open(tmp_path / "depth" / "frame_00000.png") as im:
        assert np.array(im).tolist() == [[0, 1234], [65535, 0]]
    with Image.open(tmp_path / "normal" / "frame_00000.png") as im:
        assert np.array(im).tolist() == [[[0, 0, 0], [128, 128, 255]], [[255, 128, 128], [128, 255, 128]]]
    with pytest.raises(FileExistsError):  # never over an earlier export unless asked
        write_pass_images(str(tmp_path), depth, normal)
    write_pass_images(str(tmp_path), depth * 0, normal, overwrite=True)
    with Image.open(tmp_path / "depth" / "frame_00000.png") as im:
        assert not np.array(im).any()


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
    # the add-on's Export Passes writes the same entries (tests/blender/test_export.py)
    assert sorted(p.name for p in out.iterdir()) == EXPORT_ENTRIES
    _check_pass_images(out, np.load(out / "depth.npy"), np.load(out / "normal.npy"))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "not empty" in err
    assert main(args + ["--overwrite"]) == 0
