"""What ``mimo codes`` and ``mimo generate`` check and choose before they work: the output (before
any generation; frames kept when the final write fails), the ROI size for small outputs, the
camera of a clip without one (the same auto-framing in both commands), ``--frames``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimo.cli import main
from mimo.video import read_frames

WALK = Path(__file__).parents[1] / "examples" / "motions" / "walk.npz"


@pytest.fixture(scope="module")
def walk():
    from mimo.body import load_body
    from mimo.motion import load_npz

    clip, camera = load_npz(WALK)
    assert camera is None  # the example walk has no camera: the auto-framing default applies
    return clip, load_body("open", device="cpu")


def _cut(clip, sl):
    from mimo.motion.cli import take_frames

    return take_frames(clip, None, sl)[0]


def test_roi_size_follows_a_smaller_output():
    from mimo.pipeline.prepare import roi_size_for

    assert roi_size_for((64, 64), None) == 64
    assert roi_size_for((101, 77), None) == 104  # the longer side, rounded up to a multiple of 8
    assert roi_size_for((32, 16), None) == 64  # the pipeline's smallest ROI
    assert roi_size_for((1280, 720), None) == 784 and roi_size_for((784, 784), None) == 784
    assert roi_size_for((64, 64), 256) == 256  # --roi-size wins


def test_generate_small_output_generates_small_rois_and_says_so(tiny_weights, tmp_path, capsys, monkeypatch):
    from mimo.pipeline import cli

    seen = []
    real = cli.load

    def spy(args, frame_steps=0):
        backend = real(args, frame_steps)
        generate = backend.generate
        backend.generate = lambda job, events: seen.append(job.roi_size) or generate(job, events)
        return backend

    common = ["generate", "--weights", str(tiny_weights), "--character", str(WALK.parents[1] / "character.png"),
              "--motion", str(WALK), "--frames", "0:4", "--size", "64x48", "--steps", "1", "--device", "cpu",
              "--dtype", "fp32", "--quiet"]
    monkeypatch.setattr(cli, "load", spy)
    assert main(common + ["--out", str(tmp_path / "a.mp4")]) == 0
    assert "generating 4 frames at 64x48, ROI crops at 64x64" in capsys.readouterr().err
    assert main(common + ["--roi-size", "128", "--out", str(tmp_path / "b")]) == 0
    assert "ROI crops at 128x128" in capsys.readouterr().err
    assert seen == [64, 128]
    assert read_frames(tmp_path / "a.mp4").shape == (4, 48, 64, 3)


def test_codes_auto_frames_a_clip_without_camera_like_generate(tmp_path, capsys, walk):
    from mimo.codes.render import auto_camera_track, render_clip
    from mimo.pipeline.backends import composite_preview

    clip, body = walk
    part = _cut(clip, slice(0, 3))
    assert main(["codes", "--motion", str(WALK), "--frames", ":3", "--size", "64x48", "--device", "cpu",
                 "--out", str(tmp_path / "c"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"auto-framed front camera ({WALK} has no camera)" in err
    # (remove_hands="auto": the front ends' rule, a hand the motion has no pose for is left out)
    want, mask = render_clip(part, auto_camera_track(part, body, 64, 48), body, remove_hands="auto",
                             size=(64, 48))
    assert mask.mean() > 0.05  # the body is in view, not the almost black frames of the origin camera
    np.testing.assert_array_equal(read_frames(tmp_path / "c"), want)
    # mimo generate --motion uses the same camera
    assert main(["generate", "--preview", "--motion", str(WALK), "--frames", ":3", "--size", "64x48",
                 "--device", "cpu", "--out", str(tmp_path / "g"), "--quiet"]) == 0
    assert f"auto-framed front camera ({WALK} has no camera)" in capsys.readouterr().err
    np.testing.assert_array_equal(read_frames(tmp_path / "g"), composite_preview(want, mask))
    # the official camera at the origin on request
    assert main(["codes", "--motion", str(WALK), "--frames", ":3", "--size", "64x48", "--device", "cpu",
                 "--official-camera", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "the official default camera at the origin" in capsys.readouterr().err
    np.testing.assert_array_equal(read_frames(tmp_path / "o"), render_clip(part, None, body, remove_hands="auto", size=(64, 48))[0])


def test_a_stored_camera_is_used_and_cut_with_the_frames(tmp_path, capsys, walk):
    from mimo.codes.render import render_clip
    from mimo.motion import CameraTrack, save_npz

    clip, body = walk
    eyes = np.linspace([-1.0, 1.0, 4.0], [1.0, 1.0, 4.0], clip.num_frames)
    cams = [CameraTrack.look_at(e, [0, 0.9, 0], 48, 32) for e in eyes]
    camera = CameraTrack(np.concatenate([c.K for c in cams]), np.concatenate([c.R for c in cams]),
                         np.concatenate([c.t for c in cams]), 48, 32, fps=clip.fps).validate()
    save_npz(tmp_path / "shot.npz", clip=clip, camera=camera)
    assert main(["codes", "--motion", str(tmp_path / "shot.npz"), "--frames", "10:20:3", "--device", "cpu",
                 "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert "4 frames at 48x32; camera stored in" in capsys.readouterr().err
    from mimo.motion.cli import take_frames

    part, cam = take_frames(clip, camera, slice(10, 20, 3))
    assert part.fps == clip.fps / 3 and cam.num_frames == 4
    np.testing.assert_allclose(cam.t, camera.t[10:20:3])
    np.testing.assert_array_equal(read_frames(tmp_path / "c"), render_clip(part, cam, body, remove_hands="auto")[0])


def test_generate_checks_outputs_before_any_work(tmp_path, capsys, monkeypatch):
    from mimo.pipeline import cli

    def no_work(*args, **kwargs):
        raise AssertionError("inputs were read before the output was checked")

    codes = tmp_path / "codes"
    from mimo.video import write_frames

    write_frames(codes, np.zeros((2, 33, 33, 3), np.uint8))
    (tmp_path / "taken.mp4").write_bytes(b"x")
    monkeypatch.setattr(cli, "build_job", no_work)
    for out, extra, phrase in [("odd.mp4", ["--size", "101x77"], "even width and height, got 101x77"),
                               ("taken.mp4", [], "exists (pass --overwrite"),
                               ("x.webm", [], "expected a .mp4 file or a folder")]:
        assert main(["generate", "--preview", "--codes", str(codes), "--out", str(tmp_path / out)] + extra) == 2
        assert phrase in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setattr(cli, "load", no_work)  # an odd size from the inputs: refused before loading models
    assert main(["generate", "--preview", "--codes", str(codes), "--out", str(tmp_path / "a.mp4")]) == 2
    assert "even width and height, got 33x33" in capsys.readouterr().err
    assert not (tmp_path / "a.mp4").exists()


def test_frames_survive_a_failed_final_write(tmp_path, capsys, monkeypatch):
    import mimo.video

    codes = np.zeros((3, 32, 32, 3), np.uint8)
    codes[:, 8:24, 8:24] = (200, 100, 50)
    mimo.video.write_frames(tmp_path / "codes", codes)

    def disk_full(out, frames, fps):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mimo.video, "_write_mp4", disk_full)
    out = tmp_path / "clip.mp4"
    assert main(["generate", "--preview", "--codes", str(tmp_path / "codes"), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    rescue = tmp_path / "clip_frames"
    assert err == (f"mimo generate: error: --out: writing '{out}' failed (No space left on device); the 3 "
                   f"frames are saved as PNGs in '{rescue}'")
    assert sorted(p.name for p in rescue.iterdir()) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    from mimo.pipeline.backends import composite_preview

    np.testing.assert_array_equal(read_frames(rescue), composite_preview(codes, None))


def test_output_path_rules(tmp_path):
    from mimo.cli_errors import UsageError, output_path

    assert output_path("--out", tmp_path / "frames.v2", False) == tmp_path / "frames.v2"  # a folder
    assert output_path("--out", tmp_path / "new" / "deeper" / "a.mp4", False, size=(64, 48))
    for path, kw, phrase in [(tmp_path / "a.npz", {}, "expected a .mp4 file or a folder"),
                             (tmp_path / "a.png", {}, "expected a .mp4 file or a folder"),
                             (tmp_path / "a.mp4", {"size": (63, 48)}, "even width and height, got 63x48")]:
        with pytest.raises(UsageError, match=phrase):
            output_path("--out", path, False, **kw)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "frame_00000.png").write_bytes(b"x")
    with pytest.raises(UsageError, match="already holds frames"):
        output_path("--out", tmp_path / "f", False)
    assert output_path("--out", tmp_path / "f", True) == tmp_path / "f"
