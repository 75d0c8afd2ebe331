"""Scene fill recovers a static background hidden by a moving person; the occlusion layer marks
an occluder that passes in front; masks lose their specks; relative depth aligns to metric."""
from __future__ import annotations

import numpy as np
import pytest

from mimo.decompose.scene import PlateBuilder, align_depth, clean_mask, occlusion_layer, scene_frame

H, W, F = 48, 64, 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _background():
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([100 + 60 * np.sin(x / 9.0), 120 + 50 * np.cos(y / 7.0), 80 + x + y], -1).astype(np.uint8)


def _person(f):
    m = np.zeros((H, W), bool)
    x = 4 + 2 * f  # walks left to right; columns 26..31 are covered in every frame
    m[10:40, x:x + 28] = True
    return m


def test_plate_recovers_the_static_background():
    bg = _background()
    rng = np.random.default_rng(0)
    plate = PlateBuilder(max_samples=F)
    frames = []
    for f in range(F):
        frame = bg.copy()
        frame[_person(f)] = rng.integers(0, 256, (int(_person(f).sum()), 3))  # the person
        frames.append(frame)
        if f in plate.sample_ids(F):
            plate.add(frame, _person(f))
    got, holes = plate.plate()
    never = np.logical_and.reduce([_person(f) for f in range(F)])
    assert np.array_equal(holes, never) and never.sum() > 0
    err = np.abs(got.astype(int) - bg.astype(int))
    assert err[~never].max() == 0  # seen at least once: exact
    assert err[never].mean() < 20  # never seen: inpainted from around (smooth background)
    out = scene_frame(frames[5], _person(5), got)
    assert np.abs(out.astype(int) - bg.astype(int))[~never].max() == 0


def test_occlusion_marks_the_occluder_in_front_only():
    body = np.zeros((H, W), bool)
    body[10:40, 20:40] = True
    body_depth = np.where(body, 3.0, np.inf)
    occluder = np.zeros((H, W), bool)
    occluder[20:30, 10:30] = True  # a pole crossing the left half of the body
    scene_depth = np.where(occluder, 1.5, 6.0)
    person = body & ~occluder
    occ = occlusion_layer(body, body_depth, person, scene_depth)
    assert occ.dtype == np.uint8
    np.testing.assert_array_equal(occ > 0, body & occluder)
    # the same pole behind the person (farther than the body) is no occlusion
    behind = occlusion_layer(body, body_depth, person, np.where(occluder, 5.0, 6.0))
    assert not behind.any()


def test_clean_mask_drops_specks_and_fills_holes():
    m = np.zeros((H, W), bool)
    m[5:30, 5:30] = True
    m[15, 15] = False  # a hole
    m[40, 50] = True  # a speck
    out = clean_mask(m, min_area=4)
    expect = np.zeros((H, W), bool)
    expect[5:30, 5:30] = True
    np.testing.assert_array_equal(out, expect)


def test_relative_depth_aligns_to_metric():
    z = np.linspace(2.0, 5.0, H * W).reshape(H, W)
    rel = 3.0 / z + 0.2  # inverse depth up to scale and shift
    where = np.zeros((H, W), bool)
    where[10:20] = True
    np.testing.assert_allclose(align_depth(rel, np.where(where, z, np.inf), where), z, rtol=1e-4)


@pytest.fixture(scope="module")
def tiny_inpainter(tmp_path_factory):
    from mimo.decompose.tiny import save_tiny_inpainter

    return save_tiny_inpainter(tmp_path_factory.mktemp("inpaint") / "pipeline")


def _plate_with_holes():
    """The moving-person clip with a band of columns no frame shows (holes), as plate samples."""
    bg = _background()
    plate = PlateBuilder(max_samples=F)
    for f in range(F):
        frame = bg.copy()
        frame[_person(f)] = 255
        plate.add(frame, _person(f))
    return bg, plate


def test_diffusers_inpainting_repaints_only_the_plates_holes(tiny_inpainter):
    """A tiny random SD inpainting pipeline (built from configs, saved, loaded back with the real
    from_pretrained): every pixel some frame showed stays exactly the background, hole pixels
    change, the size and dtype are the plate's, and the same seed gives the same plate."""
    from mimo.decompose.inpaint import DiffusersInpainter

    bg, plate = _plate_with_holes()
    holes = plate.holes()
    inpainter = DiffusersInpainter(tiny_inpainter, steps=2, seed=7)
    assert inpainter.size == 32 and inpainter.multiple == 4  # native size of the tiny model
    got, got_holes = plate.plate(inpainter)
    np.testing.assert_array_equal(got_holes, holes)
    assert got.shape == bg.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got[~holes], bg[~holes])
    opencv, _ = plate.plate()
    assert np.abs(got[holes].astype(int) - opencv[holes].astype(int)).mean() > 5  # not OpenCV's fill
    assert np.array_equal(got, plate.plate(DiffusersInpainter(tiny_inpainter, steps=2, seed=7))[0])
    assert not np.array_equal(got, plate.plate(DiffusersInpainter(tiny_inpainter, steps=2, seed=8))[0])
    # the region worked on: the holes with context, at a size the model takes
    y0, y1, x0, x1 = inpainter.region(holes)
    ys, xs = np.nonzero(holes)
    assert y0 <= ys.min() and y1 > ys.max() and x0 <= xs.min() and x1 > xs.max()
    th, tw = inpainter.working_size(y1 - y0, x1 - x0)
    assert max(th, tw) == 32 and th % 4 == 0 and tw % 4 == 0


def test_a_missing_inpainting_model_names_the_flag_and_the_command(tmp_path):
    from mimo.decompose.inpaint import DiffusersInpainter, InpaintModelMissing

    with pytest.raises(InpaintModelMissing) as e:
        DiffusersInpainter(str(tmp_path / "nowhere"))
    assert str(e.value).startswith("--inpaint-model: ") and "mimo weights download DIR --decompose" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InpaintModelMissing, match="no model_index.json"):
        DiffusersInpainter(str(tmp_path / "empty"))
    broken = tmp_path / "broken"  # an index naming a UNet the folder does not have
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "StableDiffusionInpaintPipeline", '
                                             '"_diffusers_version": "0.42.1", "unet": ["diffusers", '
                                             '"UNet2DConditionModel"]}')
    with pytest.raises(InpaintModelMissing, match="did not load") as e:
        DiffusersInpainter(str(broken))
    assert str(e.value).startswith("--inpaint-model: ") and "\n" not in str(e.value)


def test_the_inpaint_flag_reaches_the_scene_stage(tiny_inpainter, tmp_path):
    """`mimo decompose --inpaint-model` fills the plate's holes with the pipeline: a static
    camera and a person standing still, so the background under the (grown) mask is never seen;
    the scene layer is the frame off the mask and, on it, not OpenCV's fill of the plate."""
    import json

    from mimo.cli import main
    from mimo.data.layout import read_clip
    from mimo.decompose.scene import grow, inpaint
    from mimo.decompose.tiny import save_tiny
    from mimo.video import write_frames

    frames = np.repeat(_background()[None], 3, 0)
    frames[:, 12:40, 24:40] = (200, 40, 40)
    write_frames(tmp_path / "v.mp4", frames, fps=10)
    argv = ["decompose", str(tmp_path / "v.mp4"), "--threshold", "0.01", "--device", "cpu", "--chunk", "3",
            "--fit-steps", "20", "--out", str(tmp_path / "sd"), "--inpaint-model", str(tiny_inpainter),
            "--inpaint-steps", "2"]
    for stage, path in save_tiny(tmp_path / "models").items():
        argv += [f"--{stage}", str(path)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "sd" / "report.json").read_text())
    assert report["plate_inpainted_by"] == str(tiny_inpainter) and report["plate_inpainted_pixels"] > 0
    clip = read_clip(tmp_path / "sd" / "clip")
    assert clip.scene.shape == clip.frames.shape and clip.scene.dtype == np.uint8
    person = np.stack([grow(m > 0, 4) for m in np.load(tmp_path / "sd" / "layers" / "mask.npy")])
    holes = np.logical_and.reduce(person)  # what no frame shows: the plate's holes
    assert holes.sum() == report["plate_inpainted_pixels"]
    for f in range(3):
        np.testing.assert_array_equal(clip.scene[f][~person[f]], clip.frames[f][~person[f]])
    plate = np.median(np.where(person[..., None], np.nan, clip.frames.astype(float)), 0)
    opencv = inpaint(np.nan_to_num(plate).round().astype(np.uint8), holes)
    assert np.abs(clip.scene[0][holes].astype(int) - opencv[holes].astype(int)).mean() > 5
