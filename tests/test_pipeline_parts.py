"""Exact-mode pieces: scheduler figures (docs/MIMO.md §7), context windows (§7.1), ROI (§8.3), compositing (§8.4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mimo.pipeline.composite import composite_spans, feather_mask, paste_frame
from mimo.pipeline.roi import RoiSpan, crop_character, frame_box, human_mask, pad_square, roi_spans
from mimo.pipeline.schedule import context_windows, ddim_step_reference, make_scheduler

# --- scheduler -------------------------------------------------------------------------------

def test_scheduler_figures_of_the_spec():
    s = make_scheduler()
    s.set_timesteps(25)
    assert s.timesteps.tolist() == list(range(999, 0, -40))
    assert s.timesteps.tolist()[:3] == [999, 959, 919] and s.timesteps[-1] == 39
    a = s.alphas_cumprod
    assert a[0].item() == pytest.approx(0.99915, abs=5e-6)
    assert a[39].item() == pytest.approx(0.96026, abs=5e-6)
    assert a[999].item() == 0.0
    assert s.init_noise_sigma == 1.0


def test_betas_match_zero_snr_recipe():
    """Independent float64 recomputation of the recipe of docs/MIMO.md §7."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    sq = np.sqrt(np.cumprod(1 - betas))
    sq0, sqT = sq[0], sq[-1]
    sq = (sq - sqT) * sq0 / (sq0 - sqT)
    np.testing.assert_allclose(make_scheduler().alphas_cumprod.double().numpy(), sq ** 2, atol=2e-6)


def test_ddim_step_is_the_v_prediction_update():
    s = make_scheduler()
    s.set_timesteps(25)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 5, 5, generator=g)
    for t in s.timesteps.tolist():
        v = torch.randn(x.shape, generator=g)
        got = s.step(v, t, x, eta=0.0).prev_sample
        want = ddim_step_reference(v, t, x, s.alphas_cumprod, t - 40)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # at t = 999, ā = 0: x̂0 = −v
    v = torch.randn(x.shape, generator=g)
    x0 = s.step(v, 999, x, eta=0.0).pred_original_sample
    torch.testing.assert_close(x0, -v)


# --- context windows -------------------------------------------------------------------------

def _span(a, b):
    return list(range(a, b + 1))


@pytest.mark.parametrize("L, windows", [
    (1, [[0]]),
    (24, [_span(0, 23)]),
    (32, [_span(0, 23), _span(20, 31) + _span(0, 11)]),
    (48, [_span(0, 23), _span(20, 43), _span(40, 47) + _span(0, 15)]),
])
def test_window_table(L, windows):
    assert context_windows(L) == windows


def test_window_table_long_clips():
    w64 = context_windows(64)
    assert len(w64) == 4 and w64[-1] == _span(60, 63) + _span(0, 19)
    w150 = context_windows(150)
    assert len(w150) == 8 and w150[-1] == _span(140, 149) + _span(0, 13)
    assert sum(map(len, w150)) / 150 == pytest.approx(1.28)
    assert sum(map(len, context_windows(32))) / 32 == 1.5
    assert context_windows(32, size=32) == [_span(0, 31)]
    assert context_windows(32, size=16) == [_span(0, 15), _span(12, 27), _span(24, 31) + _span(0, 7)]
    # every frame is covered
    for L in (25, 33, 77, 150):
        assert set().union(*map(set, context_windows(L))) == set(range(L))


def test_open_windows_do_not_wrap():
    w = context_windows(48, closed_loop=False)
    assert w == [_span(0, 23), _span(20, 43), _span(24, 47)]


@pytest.mark.parametrize("kw, match", [
    (dict(num_frames=0), "num_frames"), (dict(num_frames=10, size=33), "size: .*1..32"),
    (dict(num_frames=10, size=8, overlap=8), "overlap"),
])
def test_window_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        context_windows(**kw)


# --- ROI -------------------------------------------------------------------------------------

def _codes(F, H, W, rects):
    c = np.zeros((F, H, W, 3), np.uint8)
    for i, (y0, y1, x0, x1) in enumerate(rects):
        c[i, y0:y1, x0:x1] = (200, 100, 50)
    return c


def test_frame_box_by_hand():
    codes = _codes(1, 128, 128, [(40, 80, 50, 70)])
    # mask after OpenCV-style 2x2 opening: rows 41..80, cols 51..70 (shifted by one, see roi.py)
    m = human_mask(codes)[0]
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (41, 80, 51, 70)
    # margins 4 rows, 1 col -> y 37..85, x 50..72 -> square 48 centred at 61
    assert frame_box(m) == (37, 85, 37, 85)


def test_mask_drops_specks_and_dim_pixels():
    codes = _codes(1, 32, 32, [(10, 20, 10, 20)])
    codes[0, 5, 27] = 255          # isolated speck: opened away
    codes[0, 25:30, 25:30] = 10    # gray 10 is not > 10
    codes[0, 14, 14] = 0           # a one-pixel hole: closed
    m = human_mask(codes)[0]
    assert not m[5, 27] and not m[25:30, 25:30].any() and m[15, 15]
    assert m.sum() == 100


def test_box_clamped_at_border_and_empty_frame():
    codes = _codes(2, 64, 96, [(0, 64, 0, 10), (0, 0, 0, 0)])
    b = frame_box(human_mask(codes)[0])
    assert b[0] == 0 and b[2] == 0 and b[3] == 64 and (b[1] - b[0]) % 2 == 0
    assert frame_box(human_mask(codes)[1]) is None


def test_roi_spans_split_when_box_grows():
    rects = [(40, 80, 50, 70)] * 6 + [(10, 120, 10, 110)] * 4
    spans = roi_spans(_codes(10, 128, 128, rects))
    assert [(c.first, c.start, c.stop) for c in spans] == [(0, 0, 6), (2, 6, 10)]
    assert spans[0].box == (37, 85, 37, 85)
    # a still body never splits; a body-less video is one whole-frame span
    assert len(roi_spans(_codes(5, 128, 128, [(40, 80, 50, 70)] * 5))) == 1
    assert roi_spans(np.zeros((3, 16, 32, 3), np.uint8)) == [RoiSpan((0, 32, 0, 16), 0, 0, 3)]


def test_pad_square():
    img = np.ones((30, 20, 3), np.uint8)
    p, pads = pad_square(img, 255)
    assert p.shape == (32, 32, 3) and pads == (1, 1, 6, 6)
    assert (p[0] == 255).all() and (p[1:31, 6:26] == 1).all()
    assert pad_square(np.zeros((32, 32), np.uint8), 0)[1] == (0, 0, 0, 0)


# --- compositing -----------------------------------------------------------------------------

def test_feather_mask():
    m = feather_mask(50, 50, (True, False, False, False))  # r = 4, top side only
    np.testing.assert_allclose(m[:5, 25], [0.125, 0.375, 0.625, 0.875, 1.0])
    assert (m[10:] == 1).all() and (m[:, 0] < 1).sum() == 4
    assert (feather_mask(8, 9, (False,) * 4) == 1).all()


def test_paste_frame_full_box_is_identity_and_inner_box_blends():
    rng = np.random.default_rng(0)
    gen = rng.random((32, 32, 3))
    scene = np.zeros((32, 32, 3), np.uint8)
    res = paste_frame(gen, (0, 32, 0, 32), 32, (0, 0, 0, 0), scene)
    np.testing.assert_array_equal(res, (gen * 255).astype(np.uint8))  # truncation, no feathering
    # inner box 16x16 at (8, 8), generated at 32 px: resized (bicubic) to 16, scene elsewhere
    gen = np.full((32, 32, 3), 0.5)
    res = paste_frame(gen, (8, 24, 8, 24), 16, (0, 0, 0, 0), scene)
    assert res[16, 16, 0] == 127 and (res[:8] == 0).all() and (res[:, 24:] == 0).all()
    r = 1  # max(1, round(0.08 * 16))
    assert res[8, 16, 0] == pytest.approx(127 * min(1, 0.5 / r))
    # occlusion puts the source pixels back
    occ = np.zeros((32, 32), np.uint8)
    occ[16, 16] = 255
    src = np.full((32, 32, 3), 9, np.uint8)
    res = paste_frame(gen, (8, 24, 8, 24), 16, (0, 0, 0, 0), scene, occ, src)
    assert (res[16, 16] == 9).all() and res[16, 17, 0] == 127


def test_composite_spans_crossfade_and_order():
    F, H, W = 6, 16, 16
    spans = [RoiSpan((0, W, 0, H), 0, 0, 4), RoiSpan((0, W, 0, H), 2, 4, 6)]
    gen = np.concatenate([np.full((4, H, W, 3), 0.2), np.full((4, H, W, 3), 0.8)])
    scene = np.zeros((F, H, W, 3), np.uint8)
    out = list(composite_spans(gen, spans, [(16, (0, 0, 0, 0))] * 2, scene))
    assert [i for i, _ in out] == list(range(F))
    a, b = int(0.2 * 255), int(0.8 * 255)
    vals = [img[0, 0, 0] for _, img in out]
    assert vals[:2] == [a, a] and vals[4:] == [b, b]
    assert vals[2] == int(a * 0.8 + b * 0.2) and vals[3] == int(a * 0.6 + b * 0.4)


def test_crop_character():
    img = np.zeros((100, 60, 3), np.uint8)
    alpha = np.zeros((100, 60), np.uint8)
    alpha[20:80, 10:30] = 255          # figure: 60 rows -> 3 rows of margin above and below
    alpha[50, 40] = 128                 # half-transparent pixel widens the box to column 40
    out = crop_character(img, alpha)
    assert out.shape == (66, 31, 3)
    assert (out[0] == 255).all() and (out[3:63, 0] == 0).all()
    assert (out[33, 30] == 127).all()   # rint(255 * (1 - 128/255)) = 127
    assert crop_character(img, None) is img
