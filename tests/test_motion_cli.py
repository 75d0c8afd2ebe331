"""``mimo motion``: info, convert (AMASS, BVH, clip resampling) and export-rig, end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimo.cli import main
from mimo.motion import MotionClip, load_npz

WALK = Path(__file__).parents[1] / "examples" / "motions" / "walk.npz"


def test_info(capsys):
    assert main(["motion", "info", str(WALK)]) == 0
    out = capsys.readouterr().out
    assert "39 frames at 30 fps" in out and "model open" in out


def test_convert_amass_with_resampling(tmp_path):
    g = np.random.default_rng(0)
    src = tmp_path / "seq_poses.npz"
    np.savez(src, poses=g.normal(size=(13, 156)) * 0.2, trans=g.normal(size=(13, 3)),
             betas=np.zeros(16), mocap_framerate=60.0)
    out = tmp_path / "clip.npz"
    assert main(["motion", "convert", str(src), str(out), "--fps", "30"]) == 0
    clip = MotionClip.load(out)
    assert clip.fps == 30.0 and clip.num_frames == 7 and clip.bodies[0].model == "smplh"


def test_convert_hmr2_writes_camera(tmp_path):
    src = tmp_path / "hmr2.npz"
    np.savez(src, global_orient=np.tile(np.eye(3), (4, 1, 1, 1)),
             body_pose=np.tile(np.eye(3), (4, 23, 1, 1)), betas=np.zeros((4, 10)),
             pred_cam_t=np.tile([0.0, 0.0, 10.0], (4, 1)))
    out = tmp_path / "shot.npz"
    assert main(["motion", "convert", str(src), str(out), "--size", "640x480"]) == 0
    clip, cam = load_npz(out)
    assert clip.bodies[0].model == "smpl" and (cam.width, cam.height) == (640, 480)
    assert cam.K[0, 0, 0] == pytest.approx(5000 / 256 * 640)


def test_export_rig(tmp_path):
    out = tmp_path / "rig.npz"
    assert main(["motion", "export-rig", str(out)]) == 0
    with np.load(out, allow_pickle=False) as d:
        assert d["rest_vertices"].shape == (13718, 3)


def test_convert_cuts_frames_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "part.npz"
    assert main(["motion", "convert", str(WALK), str(out), "--frames", "10:30:2"]) == 0
    whole, part = MotionClip.load(WALK), MotionClip.load(out)
    assert part.num_frames == 10 and part.fps == whole.fps / 2
    np.testing.assert_allclose(part.bodies[0].transl, whole.bodies[0].transl[10:30:2])
    assert main(["motion", "convert", str(WALK), str(out)]) == 2
    assert "exists (pass --overwrite" in capsys.readouterr().err
    assert main(["motion", "convert", str(WALK), str(out), "--overwrite"]) == 0
    assert MotionClip.load(out).num_frames == whole.num_frames
