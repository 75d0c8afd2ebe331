"""The Blender-free half of Make Training Dataset (``blender_addon/core/dataset.py``): ring cameras
frame what they must (checked by projecting with the add-on's own camera conversion), the clip plan,
the motion list, and clip folders that never replace a clip without being asked."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from blender_addon.core import axes
from blender_addon.core import camera as cam
from blender_addon.core import dataset as ds


def test_ring_cameras_look_at_the_body_and_frame_all_of_it():
    rng = np.random.default_rng(0)
    pts = rng.uniform([-0.4, -0.3, 0.0], [0.5, 0.2, 1.8], size=(500, 3)) + [2.0, 1.0, 0.0]  # Blender, Z up
    W, H, f = 96, 128, 150.0
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    mats = ds.ring_cameras(pts, 6, W / 2 / f, H / 2 / f, margin=0.1, elevation_deg=10.0, front_deg=30.0)
    centre = (pts.min(0) + pts.max(0)) / 2
    for k, M in enumerate(mats):
        R, t = cam.extrinsics(M)
        c = cam.project(K, R, t, axes.points_blender_to_wire(centre[None]))[0]
        assert np.allclose(c, [W / 2, H / 2], atol=1e-6)  # looks at the centre
        uv = cam.project(K, R, t, axes.points_blender_to_wire(pts))
        assert uv.min() > 0 and (uv[:, 0] < W).all() and (uv[:, 1] < H).all()  # all of it in view
        assert np.isclose(M[:3, 0][2], 0.0)  # no roll: the camera's x axis is level
        az = np.degrees(np.arctan2(M[0, 3] - centre[0], -(M[1, 3] - centre[1])))
        assert np.isclose((az - 30.0 - 60.0 * k + 180) % 360 - 180, 0.0, atol=1e-6)  # evenly from the front
        el = np.degrees(np.arcsin((M[2, 3] - centre[2]) / np.linalg.norm(M[:3, 3] - centre)))
        assert np.isclose(el, 10.0)
    with pytest.raises(ValueError, match="at least 1 ring camera"):
        ds.ring_cameras(pts, 0, 0.3, 0.4)


def test_plan_names_every_motion_and_camera_once():
    plans = ds.plan_clips(["/m/walk.npz", "/n/walk.bvh", "/m/my dance.npz"], ["Cam A", "ring01"])
    assert [p.name for p in plans] == ["walk_Cam_A", "walk_ring01", "walk_Cam_A_1", "walk_ring01_1",
                                       "my_dance_Cam_A", "my_dance_ring01"]
    assert [p.camera for p in plans] == [0, 1] * 3
    assert [p.name for p in ds.plan_clips([], ["cam"])] == ["scene_cam"]
    with pytest.raises(ValueError, match="no camera"):
        ds.plan_clips([], [])


def test_motion_files_from_a_folder_or_a_list(tmp_path):
    for name in ("b.npz", "a.bvh", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert ds.motion_files(str(tmp_path)) == [str(tmp_path / "a.bvh"), str(tmp_path / "b.npz")]
    assert ds.motion_files(f" {tmp_path / 'b.npz'} ; {tmp_path / 'a.bvh'}") == [str(tmp_path / "b.npz"),
                                                                            str(tmp_path / "a.bvh")]
    assert ds.motion_files("") == []
    with pytest.raises(ValueError, match="notes.txt is not a motion file"):
        ds.motion_files(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="does not exist"):
        ds.motion_files(str(tmp_path / "gone.npz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no motion files"):
        ds.motion_files(str(tmp_path / "empty"))


def test_clip_folder_is_complete_or_absent_and_never_replaced_unasked(tmp_path):
    from mimo.data.layout import read_clip

    def write(value):
        tmp = ds.start_clip(str(tmp_path), "c")
        for name, shape in (("frames", (2, 16, 24, 3)), ("codes", (2, 16, 24, 3)), ("scene", (2, 16, 24, 3)),
                            ("occlusion", (2, 16, 24))):
            ds.save_array(tmp, name, np.full(shape, value, np.uint8), len(shape))
        return tmp

    write(1)
    assert ds.finish_clip(str(tmp_path), "c", {"fps": 24.0}, overwrite=False) == str(tmp_path / "c")
    assert os.listdir(tmp_path) == ["c"]
    clip = read_clip(tmp_path / "c")  # the library's reader (no reference image: no PIL needed)
    assert clip.num_frames == 2 and clip.meta["fps"] == 24.0 and clip.meta["width"] == 24
    assert json.loads((tmp_path / "c" / "meta.json").read_text())["format"] == "mimo-clip"
    write(2)
    with pytest.raises(ValueError, match="exists \\(tick Overwrite"):
        ds.finish_clip(str(tmp_path), "c", {}, overwrite=False)
    assert np.load(tmp_path / "c" / "frames.npy")[0, 0, 0, 0] == 1
    ds.finish_clip(str(tmp_path), "c", {}, overwrite=True)
    assert np.load(tmp_path / "c" / "frames.npy")[0, 0, 0, 0] == 2 and os.listdir(tmp_path) == ["c"]
    tmp = write(3)
    np.save(os.path.join(tmp, "codes.npy"), np.zeros((1, 16, 24, 3), np.uint8))
    with pytest.raises(ValueError, match=r"codes: expected \(2, 16, 24, 3\) like the frames"):
        ds.finish_clip(str(tmp_path), "c", {}, overwrite=True)
    ds.drop_partial(str(tmp_path), "c")
    assert os.listdir(tmp_path) == ["c"]
    assert ds.existing_clips(str(tmp_path), ds.plan_clips([], ["x"]) + [ds.ClipPlan("c", "", 0)]) == ["c"]
    with pytest.raises(ValueError, match="width: expected a multiple of 8"):
        ds.check_size(100, 64)
