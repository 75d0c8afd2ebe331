"""Code tables, the official sdc_info.npy loader, hand removal and cameras."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from mimo.codes import (
    FRONT_VIEW,
    auto_camera,
    default_code_table,
    load_sdc_table,
    official_camera,
    official_intrinsics,
    quantize,
    remove_faces,
    remove_hands,
)


def test_default_table_normalises_each_axis():
    rng = np.random.default_rng(0)
    rest = rng.normal(size=(500, 3)) * [0.3, 0.9, 0.1] + [0.0, 0.2, 0.05]
    table = default_code_table(rest)
    assert table.shape == (500, 3) and table.dtype == np.float32
    np.testing.assert_allclose(table.min(0), 0.0)
    np.testing.assert_allclose(table.max(0), 1.0)
    want = (rest - rest.min(0)) / np.ptp(rest, 0)
    np.testing.assert_allclose(table, want, atol=0.5 / 255 + 1e-7)  # quantized to 1/255 steps
    np.testing.assert_allclose(table * 255, np.round(table * 255), atol=1e-4)
    # x -> R, y -> G, z -> B: the vertex with the largest y has G = 1.
    assert table[np.argmax(rest[:, 1]), 1] == 1.0 and table[np.argmin(rest[:, 2]), 2] == 0.0


def test_quantize_rounds_like_rgba8():
    got = quantize(np.array([[0.5 / 255 - 1e-6, 0.5 / 255 + 1e-6, 1.0, 1.2, -0.1]]))
    np.testing.assert_array_equal(got * 255, np.float32([[0.0, 1.0, 255.0, 255.0, 0.0]]))


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.uint8, 4), (np.float32, 3), (np.float64, 4)])
def test_load_official_layout(tmp_path, dtype, channels):
    rng = np.random.default_rng(1)
    colors8 = rng.integers(0, 256, size=(6890, channels)).astype(np.uint8)
    table = colors8 if dtype == np.uint8 else (colors8 / 255.0).astype(dtype)
    path = tmp_path / "sdc_info.npy"
    np.save(path, {"smpl": table, "other": np.zeros(3)}, allow_pickle=True)  # as the release stores it
    got = load_sdc_table(path, num_vertices=6890)
    assert got.shape == (6890, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, colors8[:, :3] / 255.0, atol=1e-7)


def test_load_plain_array_and_npz(tmp_path):
    t = np.linspace(0, 1, 30).reshape(10, 3)
    np.save(tmp_path / "plain.npy", t)
    np.savez(tmp_path / "t.npz", smpl=t)
    np.testing.assert_allclose(load_sdc_table(tmp_path / "plain.npy"), quantize(t))
    np.testing.assert_allclose(load_sdc_table(tmp_path / "t.npz", num_vertices=10), quantize(t))


def test_load_rejects_bad_tables(tmp_path):
    np.save(tmp_path / "a.npy", {"smpl": np.zeros((10, 3))}, allow_pickle=True)
    with pytest.raises(ValueError, match="one colour per body vertex \\(6890\\), got 10"):
        load_sdc_table(tmp_path / "a.npy", num_vertices=6890)
    np.save(tmp_path / "b.npy", {"smpl": np.full((10, 3), 1.5)}, allow_pickle=True)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        load_sdc_table(tmp_path / "b.npy")
    np.save(tmp_path / "c.npy", {"body": np.zeros((10, 3))}, allow_pickle=True)
    with pytest.raises(ValueError, match="entry 'smpl'"):
        load_sdc_table(tmp_path / "c.npy")
    np.save(tmp_path / "d.npy", np.zeros((10, 2)))
    with pytest.raises(ValueError, match="\\(V, 3\\) or \\(V, 4\\)"):
        load_sdc_table(tmp_path / "d.npy")
    with pytest.raises(ValueError, match="existing code table file"):
        load_sdc_table(tmp_path / "missing.npy")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mimo_codes_pwned",))


def test_load_never_runs_code_from_the_file(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array({"smpl": _Evil()}, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="refusing to load"):
        load_sdc_table(path)
    assert not os.path.exists("/tmp/mimo_codes_pwned")
    assert pickle  # the stdlib pickle is what np.save used


def test_remove_faces_drops_only_faces_entirely_inside_the_set():
    faces = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4], [4, 5, 6]])
    np.testing.assert_array_equal(remove_faces(faces, [1, 2, 3]), [[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    np.testing.assert_array_equal(remove_faces(faces, []), faces)
    sets = {"left_hand": np.array([0, 1, 2]), "right_hand": np.array([4, 5, 6])}
    np.testing.assert_array_equal(remove_hands(faces, sets), [[1, 2, 3], [2, 3, 4]])
    with pytest.raises(ValueError, match="missing 'right_hand'"):
        remove_hands(faces, {"left_hand": [0]})


def test_official_camera_figures():
    K = official_intrinsics(784, 600)
    np.testing.assert_allclose(K, [[5000 / 256 * 784, 0, 392], [0, 5000 / 256 * 784, 300], [0, 0, 1]])
    Ks, Rs, ts = official_camera(512, 512, num_frames=3)
    assert Ks.shape == (3, 3, 3) and (Rs == np.eye(3)).all() and (ts == 0).all()
    with pytest.raises(ValueError, match="width"):
        official_intrinsics(0, 10)


def test_auto_camera_frames_every_point_with_margin():
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(20, 50, 3)) * [0.4, 0.9, 0.3] + np.linspace([0, 0, 0], [3, 0, -2], 20)[:, None]
    for W, H, focal in ((784, 784, None), (640, 360, None), (320, 480, 300.0)):
        K, R, t = auto_camera(pts, W, H, margin=0.05, focal=focal)
        assert K.shape == (20, 3, 3) and np.allclose(R, FRONT_VIEW)
        cam = pts.reshape(-1, 3) @ R[0].T + t[0]
        assert (cam[:, 2] > 0.1).all()
        uv = cam @ K[0].T
        uv = uv[:, :2] / uv[:, 2:]
        lo, hi = uv.min(0), uv.max(0)
        assert (lo >= [0.05 * W - 1e-6, 0.05 * H - 1e-6]).all() and (hi <= [0.95 * W + 1e-6, 0.95 * H + 1e-6]).all()
        # Tight: some point touches the margin on at least one side.
        slack = np.minimum(lo - [0.05 * W, 0.05 * H], [0.95 * W, 0.95 * H] - hi).min()
        assert slack < 1.0
    with pytest.raises(ValueError, match="R: expected a \\(3, 3\\) rotation"):
        auto_camera(pts, 64, 64, R=np.diag([1.0, 1.0, -1.0]))
