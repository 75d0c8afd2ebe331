"""render_clip (several bodies, cameras, hands, official camera) and the `mimo codes` command."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mimo.body import load_body
from mimo.cli import main as mimo_main
from mimo.codes import auto_camera_track, default_code_table, official_intrinsics, render_clip, render_codes
from mimo.motion import BodyTrack, CameraTrack, MotionClip, load_npz
from mimo.video import read_frames

F = 4


@pytest.fixture(scope="module")
def body():
    return load_body("open")


def walking_track(shift: float, phase: float) -> BodyTrack:
    ph = np.linspace(0, np.pi, F) + phase
    pose = np.zeros((F, 21, 3))
    pose[:, 0, 0] = 0.5 * np.sin(ph)
    pose[:, 1, 0] = -0.5 * np.sin(ph)
    pose[:, 15, 2] = -1.0
    pose[:, 16, 2] = 1.0
    transl = np.stack([np.full(F, shift), np.zeros(F), np.linspace(0, 0.4, F)], 1)
    return BodyTrack(global_orient=np.zeros((F, 3)), body_pose=pose, transl=transl)


@pytest.fixture(scope="module")
def clip():
    return MotionClip(fps=24.0, bodies=[walking_track(-0.5, 0.0), walking_track(0.6, 1.0)]).validate()


def test_render_clip_equals_render_codes_on_the_merged_bodies(body, clip):
    cam = auto_camera_track(clip, body, 96, 80, focal=120.0)
    assert cam.num_frames == F and (cam.K[:, 0, 0] == 120.0).all()
    codes, mask = render_clip(clip, cam, body)
    assert codes.shape == (F, 80, 96, 3) and codes.dtype == np.uint8 and mask.dtype == bool
    verts = torch.cat([body(**{k: torch.as_tensor(v, dtype=torch.float32) for k, v in b.params().items()}).vertices
                       for b in clip.bodies], 1)
    V = body.num_vertices
    faces = torch.cat([body.faces, body.faces + V])
    table = default_code_table(body.rest_vertices.numpy())
    want, want_mask = render_codes(verts, faces, np.concatenate([table, table]), cam.K, cam.R, cam.t,
                                   96, 80, return_mask=True)
    np.testing.assert_array_equal(codes, want.numpy())
    np.testing.assert_array_equal(mask, want_mask.numpy())
    # Both bodies are in every frame, left and right of the centre, none cut by the border.
    for f in range(F):
        cols = np.nonzero(mask[f].any(0))[0]
        assert cols.min() > 0 and cols.max() < 95
        assert mask[f, :, :40].any() and mask[f, :, 56:].any()


def test_render_clip_hands_and_size(body, clip):
    cam = auto_camera_track(clip, body, 96, 80, focal=120.0)
    _, full = render_clip(clip, cam, body)
    _, cut = render_clip(clip, cam, body, remove_hands=True)
    assert (cut <= full).all() and (full & ~cut).sum() > 10
    # Rendering at twice the size rescales K: the same silhouette, downsampled, within edge pixels.
    codes2, mask2 = render_clip(clip, cam, body, size=(192, 160))
    assert mask2.shape == (F, 160, 192)
    down = mask2.reshape(F, 80, 2, 96, 2).mean((2, 4))
    assert np.abs(down - full).mean() < 0.05
    seen = []
    render_clip(clip, cam, body, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (F, F)


def test_official_default_camera_sees_a_camera_space_body(body):
    # As HMR2 outputs: global orientation includes the flip to y-down, transl puts the body ahead.
    W = H = 128
    f = official_intrinsics(W, H)[0, 0]
    track = BodyTrack(global_orient=np.tile([np.pi, 0.0, 0.0], (2, 1)), body_pose=np.zeros((2, 21, 3)),
                      transl=np.tile([0.0, 0.0, 2 * f / (0.8 * H)], (2, 1)))
    clip = MotionClip(fps=30.0, bodies=[track]).validate()
    codes, mask = render_clip(clip, None, body, size=(W, H))
    rows = np.nonzero(mask[0].any(1))[0]
    assert 0.6 * H < len(rows) < 0.95 * H  # ~0.8 H tall by construction (a 1.8 m body, height 2·f/tz)
    # Upright: the head (high G in the default code) is at the top of the image.
    top, bottom = rows.min(), rows.max()
    assert codes[0, top + 2][mask[0, top + 2]][:, 1].mean() > codes[0, bottom - 2][mask[0, bottom - 2]][:, 1].mean()
    with pytest.raises(ValueError, match="size: expected \\(width, height\\)"):
        render_clip(clip, None, body)


def test_render_clip_rejects_mismatched_inputs(body, clip):
    cam = CameraTrack.static(official_intrinsics(64, 64), np.eye(3), [0, 0, 5.0], 64, 64, num_frames=F + 1)
    with pytest.raises(ValueError, match="camera: expected 1 or 4 frames"):
        render_clip(clip, cam, body)
    with pytest.raises(ValueError, match="table: expected \\(13718, 3\\)"):
        render_clip(clip, None, body, table=np.zeros((10, 3)), size=(64, 64))
    with pytest.raises(ValueError, match="body: expected one per clip body \\(2\\)"):
        render_clip(clip, None, [body], size=(64, 64))


def test_mimo_codes_command_writes_frames(tmp_path, body, clip, capsys):
    motion = tmp_path / "clip.npz"
    clip.save(motion)
    out = tmp_path / "frames"
    assert mimo_main(["codes", "--motion", str(motion), "--auto-camera", "--size", "64x48",
                      "--device", "cpu", "--out", str(out)]) == 0
    frames = read_frames(out)
    assert frames.shape == (F, 48, 64, 3) and frames.any(-1).mean() > 0.05
    cam = auto_camera_track(clip, body, 64, 48)
    want, _ = render_clip(clip, cam, body, remove_hands="auto")  # the front ends' rule: no pose, no hand
    np.testing.assert_array_equal(frames, want)  # PNGs are lossless
    # A camera file, hands removed, an mp4.
    cam_path = tmp_path / "cam.npz"
    cam.save(cam_path)
    assert load_npz(cam_path)[1] is not None
    mp4 = tmp_path / "codes.mp4"
    assert mimo_main(["codes", "--motion", str(motion), "--camera", str(cam_path), "--no-hands",
                      "--out", str(mp4)]) == 0
    video = read_frames(mp4)
    assert video.shape == (F, 48, 64, 3)
    nohands, _ = render_clip(clip, cam, body, remove_hands=True)
    assert np.abs(video.astype(int) - nohands).mean() < 4  # H.264, visually lossless
    assert "wrote 4 frames" in capsys.readouterr().out


def test_mimo_codes_loads_an_official_layout_table(tmp_path, body, clip, capsys):
    motion = tmp_path / "clip.npz"
    clip.save(motion)
    rng = np.random.default_rng(0)
    table8 = rng.integers(0, 256, size=(body.num_vertices, 4)).astype(np.uint8)
    np.save(tmp_path / "sdc_info.npy", {"smpl": table8}, allow_pickle=True)
    out = tmp_path / "f"
    assert mimo_main(["codes", "--motion", str(motion), "--auto-camera", "--size", "32x32",
                      "--codes", str(tmp_path / "sdc_info.npy"), "--out", str(out)]) == 0
    cam = auto_camera_track(clip, body, 32, 32)
    want, _ = render_clip(clip, cam, body, table8[:, :3] / 255.0, remove_hands="auto")
    np.testing.assert_array_equal(read_frames(out), want)
    bad = tmp_path / "bad.npy"
    np.save(bad, {"smpl": table8[:100]}, allow_pickle=True)
    assert mimo_main(["codes", "--motion", str(motion), "--auto-camera", "--codes", str(bad), "--out",
                      str(tmp_path / "g")]) == 2
    assert "--codes: smpl: expected one colour per body vertex" in capsys.readouterr().err


def test_remove_hands_auto_drops_only_unposed_hands(body, clip):
    cam = auto_camera_track(clip, body, 96, 80, focal=120.0)
    posed_left = MotionClip(fps=clip.fps, bodies=[
        BodyTrack(**{**vars(b), "left_hand_pose": np.zeros((F, 15, 3))}) for b in clip.bodies]).validate()
    _, keep = render_clip(clip, cam, body)
    _, both = render_clip(clip, cam, body, remove_hands=True)
    _, auto_none = render_clip(clip, cam, body, remove_hands="auto")  # no hand poses: both removed
    _, auto_left = render_clip(posed_left, cam, body, remove_hands="auto")  # left kept
    np.testing.assert_array_equal(auto_none, both)
    assert (both <= auto_left).all() and (auto_left <= keep).all()
    assert (auto_left & ~both).sum() > 5 and (keep & ~auto_left).sum() > 5
    with pytest.raises(ValueError, match="remove_hands: expected True, False or 'auto'"):
        render_clip(clip, cam, body, remove_hands="yes")
