"""`mimo generate` end to end (preview and tiny MIMO weights on CPU) and official template folders."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mimo.cli import main
from mimo.pipeline.backends import composite_preview
from mimo.pipeline.template import load_template, resample_indices
from mimo.video import read_frames, write_frames

F, H, W = 8, 64, 64


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    rng = np.random.default_rng(0)
    codes = np.zeros((F, H, W, 3), np.uint8)
    for i in range(F):
        codes[i, 12:52, 20 + i:40 + i] = (200, 90 + 10 * i, 40)
    write_frames(d / "codes", codes)
    write_frames(d / "codes.mp4", codes, fps=25)
    scene = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(scene).save(d / "scene.png")
    occ = np.zeros((F, H, W, 3), np.uint8)
    occ[:, 30:34] = 255
    occ[:, 40] = 100
    write_frames(d / "occ", occ)
    Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)).save(d / "char.png")
    return d, codes, scene, occ[..., 0]


def test_preview_cli_is_pixel_exact(files, tmp_path, capsys):
    d, codes, scene, occ = files
    rc = main(["generate", "--preview", "--codes", str(d / "codes"), "--scene", str(d / "scene.png"),
               "--occlusion", str(d / "occ"), "--out", str(tmp_path / "out"),
               "--out-npy", str(tmp_path / "f.npy"), "--quiet"])
    assert rc == 0
    got = read_frames(tmp_path / "out")
    want = composite_preview(codes, None, np.repeat(scene[None], F, 0), occ)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), want.astype(np.float32) / 255)
    assert "wrote 8 frames" in capsys.readouterr().err


def test_mimo_cli_raw_tiny(files, tiny_weights, tmp_path):
    d = files[0]
    args = ["generate", "--weights", str(tiny_weights), "--character", str(d / "char.png"),
            "--codes", str(d / "codes.mp4"), "--raw", "--steps", "2", "--context", "6", "--overlap", "2",
            "--device", "cpu", "--dtype", "fp32", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a.mp4"), "--out-npy", str(tmp_path / "a.npy")]) == 0
    f = np.load(tmp_path / "a.npy")
    assert f.shape == (F, H, W, 3) and f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
    video = read_frames(tmp_path / "a.mp4")
    assert video.shape == (F, H, W, 3)
    # the mp4 holds exactly those frames, truncated to uint8 (x264 encodes deterministically)
    write_frames(tmp_path / "ref.mp4", (f * 255).astype(np.uint8), fps=25)
    np.testing.assert_array_equal(video, read_frames(tmp_path / "ref.mp4"))
    # same seed -> same frames; the existing file is refused without --overwrite
    assert main(args + ["--out", str(tmp_path / "b"), "--out-npy", str(tmp_path / "b.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), f)
    np.testing.assert_array_equal(read_frames(tmp_path / "b"), (f * 255).astype(np.uint8))
    assert main(args + ["--out", str(tmp_path / "a.mp4")]) == 2


def _template(folder, n=20, fps=30, config=None, occ=True):
    folder.mkdir()
    idx = np.arange(n)
    flat = lambda v: np.repeat(v[:, None, None, None], 3, -1) * np.ones((1, 32, 48, 3))  # noqa: E731
    codes = np.zeros((n, 32, 48, 3), np.uint8)
    codes[:, 8:24, 16:32] = (idx * 10 + 20)[:, None, None, None]
    write_frames(folder / "sdc.mp4", codes, fps=fps)
    write_frames(folder / "bk.mp4", flat(idx * 12).astype(np.uint8), fps=fps)
    write_frames(folder / "vid.mp4", flat(255 - idx * 12).astype(np.uint8), fps=fps)
    if occ:
        o = np.zeros((n, 32, 48, 3), np.uint8)
        o[:, :4] = 255
        write_frames(folder / "occ.mp4", o, fps=fps)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_template_resampling_and_time_crop(tmp_path):
    assert list(resample_indices(10, 30, 15)) == [0, 2, 4, 6, 8]
    assert list(resample_indices(5, 29.97, 30)) == [0, 1, 2, 3, 4]
    tpl = load_template(_template(tmp_path / "t", config={"fps": 15, "time_crop": {"start_idx": 4, "end_idx": 16}}))
    # 20 frames at 30 fps read at 15 fps: 0, 2, ..., 18; time crop 4..16 at 30 fps -> 2..8 at 15 fps
    kept = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18][2:8]
    assert tpl.fps == 15 and tpl.codes.shape == (6, 32, 48, 3)
    np.testing.assert_allclose(tpl.scene[:, 16, 24, 0], np.array(kept) * 12, atol=3)
    np.testing.assert_allclose(tpl.source[:, 16, 24, 0], 255 - np.array(kept) * 12, atol=3)
    assert tpl.occlusion.shape == (6, 32, 48) and (tpl.occlusion[:, :3] > 250).all()
    assert (tpl.occlusion[:, 8:] < 5).all()


def test_template_without_config_and_errors(tmp_path):
    tpl = load_template(_template(tmp_path / "t", n=6, fps=25, occ=False))
    assert tpl.fps == pytest.approx(25) and len(tpl.codes) == 6 and tpl.occlusion is None
    (tmp_path / "bad").mkdir()
    with pytest.raises(ValueError, match="lacks vid.mp4"):
        load_template(tmp_path / "bad")


def test_preview_cli_on_template(tmp_path):
    t = _template(tmp_path / "t", n=6)
    assert main(["generate", "--preview", "--template", str(t), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = read_frames(tmp_path / "o")
    tpl = load_template(t)
    np.testing.assert_array_equal(out, composite_preview(tpl.codes, None, tpl.scene, tpl.occlusion, tpl.source))


def test_preview_cli_renders_motion_clips(tmp_path):
    from mimo.body import load_body
    from mimo.codes.render import auto_camera_track, render_clip
    from mimo.motion import BodyTrack, MotionClip, save_npz

    n = 3
    pose = np.zeros((n, 21, 3))
    pose[:, 15, 2] = np.linspace(-1.0, -0.5, n)
    clip = MotionClip(fps=24.0, bodies=[BodyTrack(global_orient=np.zeros((n, 3)), body_pose=pose,
                                                  transl=np.zeros((n, 3)))]).validate()
    save_npz(tmp_path / "clip.npz", clip=clip)
    rc = main(["generate", "--preview", "--motion", str(tmp_path / "clip.npz"), "--size", "48x64",
               "--device", "cpu", "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 0
    body = load_body("open", device="cpu")
    codes, mask = render_clip(clip, auto_camera_track(clip, body, 48, 64), body, remove_hands="auto", size=(48, 64))
    assert mask.mean() > 0.05  # the body is in view
    np.testing.assert_array_equal(read_frames(tmp_path / "o"), composite_preview(codes, mask))


def test_character_alpha_and_mask(tmp_path):
    from mimo.pipeline.character import prepare_character as _read_character

    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[10:30, 5:15] = (10, 20, 30, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c.png")
    out = _read_character(str(tmp_path / "c.png"), None)
    assert out.shape == (22, 10, 3) and (out[0] == 255).all() and (out[1:21] == (10, 20, 30)).all()
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    Image.fromarray(rgba[..., 3]).save(tmp_path / "m.png")
    np.testing.assert_array_equal(_read_character(str(tmp_path / "rgb.png"), str(tmp_path / "m.png")), out)
    assert _read_character(str(tmp_path / "rgb.png"), None).shape == (40, 30, 3)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="character_mask: expected 30x40"):
        _read_character(str(tmp_path / "rgb.png"), str(tmp_path / "small.png"))


@pytest.mark.parametrize("choice, frame_steps, want, vae", [
    ("auto", 32 * 25, False, False),   # a short one-off job: compiling would cost more than it saves
    ("auto", 150 * 25, None, False),   # long enough: the UNet wherever it can run; the VAE only with on
    ("on", 10, True, True), ("off", 10**6, False, False),
])
def test_cli_compile_choice_reaches_the_backend(tiny_weights, monkeypatch, choice, frame_steps, want, vae):
    import argparse

    from mimo.pipeline import backends, cli

    seen = {}
    monkeypatch.setattr(backends, "load_backend", lambda name, **kw: seen.update(kw) or "backend")
    monkeypatch.setattr("mimo.models.compile.can_compile", lambda device: (True, ""))
    args = argparse.Namespace(preview=False, weights=str(tiny_weights), compile=choice, device="cpu",
                              dtype=None, mode="exact", low_memory=False)
    assert cli.load(args, frame_steps) == "backend" and seen["compile"] is want
    assert seen["compile_vae"] is vae and seen["low_memory"] is False


def test_cli_low_memory_reaches_the_pipeline(tiny_weights):
    """--low-memory loads the MIMO backend with the offloading pipeline (mimo/pipeline/memory.py)."""
    import argparse

    from mimo.pipeline import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--weights", str(tiny_weights), "--motion", "x.npz", "--character",
                                    "c.png", "--out", "o.mp4", "--device", "cpu", "--low-memory"])
    backend = cli.load(args, 1)
    assert backend.pipeline.low_memory is True
    args.low_memory = False
    assert cli.load(args, 1).pipeline.low_memory is False
