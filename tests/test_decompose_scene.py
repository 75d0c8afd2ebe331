"""Scene fill recovers a static background hidden by a moving person; the occlusion layer marks
an occluder that passes in front; masks lose their specks; relative depth aligns to metric."""
from __future__ import annotations

import numpy as np

from mimo.decompose.scene import PlateBuilder, align_depth, clean_mask, occlusion_layer, scene_frame

H, W, F = 48, 64, 12


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
