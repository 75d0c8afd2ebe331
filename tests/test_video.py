"""mimo.video: frame folders, mp4 round trips, RGBA on white, natural sort, overwrite refusal."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mimo.video import read_frames, read_image, video_fps, write_frames


def _smooth_frames(F=5, H=48, W=64):
    """Smooth gradients (compress well, so an mp4 round trip stays close)."""
    y, x = np.mgrid[0:H, 0:W]
    frames = []
    for i in range(F):
        r = (x * 255 / (W - 1))
        g = (y * 255 / (H - 1))
        b = np.full_like(r, 40 * i + 20)
        frames.append(np.stack([r, g, b], -1))
    return np.asarray(frames).round().astype(np.uint8)


def test_png_folder_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 10, 12, 3), dtype=np.uint8)
    paths = write_frames(tmp_path / "out", frames)
    assert [p.name for p in paths] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    np.testing.assert_array_equal(read_frames(tmp_path / "out"), frames)


def test_png_folder_refuses_to_overwrite(tmp_path):
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    write_frames(tmp_path, frames)
    with pytest.raises(FileExistsError, match="frame_00000.png"):
        write_frames(tmp_path, frames + 1)
    np.testing.assert_array_equal(read_frames(tmp_path), frames)  # untouched
    write_frames(tmp_path, frames + 1, overwrite=True)
    np.testing.assert_array_equal(read_frames(tmp_path), frames + 1)
    (tmp_path / "notes.txt").write_text("mine")
    write_frames(tmp_path, frames[:1] + 2, overwrite=True)  # a shorter clip leaves no old frame behind
    np.testing.assert_array_equal(read_frames(tmp_path), frames[:1] + 2)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_folder_sorted_naturally_and_jpeg_read(tmp_path):
    for i in (10, 2, 1):
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / f"f{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    got = read_frames(tmp_path)
    assert got.shape == (3, 4, 4, 3)
    assert list(got[:, 0, 0, 0]) == [1, 2, 10]
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "one.jpg", quality=95)
    one = read_frames(tmp_path / "one.jpg")
    assert one.shape == (1, 8, 8, 3) and abs(int(one[0, 4, 4, 0]) - 128) <= 2


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)     # opaque red
    rgba[0, 1] = (0, 0, 0, 0)         # transparent -> white
    rgba[0, 2] = (0, 0, 255, 128)     # half blue over white
    rgba[1] = (0, 255, 0, 51)         # 20 % green
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c.png")
    img = read_image(tmp_path / "c.png")
    assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
    np.testing.assert_array_equal(img[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(img[0, 1], (255, 255, 255))
    a = 128 / 255
    np.testing.assert_array_equal(img[0, 2], np.rint([255 * (1 - a), 255 * (1 - a), 255]).astype(int))
    np.testing.assert_array_equal(img[1, 0], np.rint([204, 255, 204]).astype(int))


def test_mp4_round_trip(tmp_path):
    frames = _smooth_frames()
    out = tmp_path / "v.mp4"
    assert write_frames(out, frames, fps=24) == [out]
    got = read_frames(out)
    assert got.shape == frames.shape and got.dtype == np.uint8
    err = np.abs(got.astype(int) - frames.astype(int))
    assert err.mean() < 2.5, err.mean()
    # frames stay in order: the blue ramp identifies each frame
    assert list(np.argsort(got[:, :, :, 2].mean(axis=(1, 2)))) == list(range(len(frames)))
    assert video_fps(out) == pytest.approx(24.0)
    assert read_frames(out, max_frames=2).shape[0] == 2
    with pytest.raises(FileExistsError):
        write_frames(out, frames)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 4, 4, 3), np.float32), "dtype uint8"),
    (np.zeros((4, 4, 3), np.uint8), r"\(F, H, W, 3\)"),
    (np.zeros((2, 4, 4, 4), np.uint8), r"\(F, H, W, 3\)"),
])
def test_write_rejects_bad_frames(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        write_frames(tmp_path / "x", bad)


def test_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        write_frames(tmp_path / "odd.mp4", np.zeros((1, 5, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="path: .*not found"):
        read_frames(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image frames"):
        read_frames(tmp_path / "empty")
    with pytest.raises(ValueError, match="fps"):
        write_frames(tmp_path / "a", np.zeros((1, 4, 4, 3), np.uint8), fps=0)


def test_frame_files_are_named_like_the_addons():
    """The CLI's frame folders and the add-on's job folders use one naming: frame_00000.png."""
    import pathlib
    import sys

    from mimo.video import FRAME_DIGITS

    sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
    from blender_addon.core.frames import FRAME_NAME

    assert FRAME_NAME.format(7) == f"frame_{7:0{FRAME_DIGITS}d}.png" == "frame_00007.png"
