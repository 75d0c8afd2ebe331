"""Fidelity of render_codes against a real OpenGL rasterizer (Mesa OSMesa, set up like the
official pyrender FLAT renderer): >= 40 dB PSNR, and differences only on silhouette edges."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mimo.codes import FRONT_VIEW, official_intrinsics, opengl, quantize, render_codes
from mimo.codes.shapes import figure

if not opengl.available():
    if os.environ.get("CI"):
        raise RuntimeError("OSMesa OpenGL must be available in CI (Makefile SYSLIBS: libosmesa6; PyOpenGL)")
    pytest.skip("OSMesa OpenGL not available (libosmesa6 + PyOpenGL)", allow_module_level=True)


def edge_pixels(mask: np.ndarray, depth: np.ndarray, jump: float) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood touches the background or a depth discontinuity > jump."""
    H, W = mask.shape
    d = np.where(mask, depth, 0.0)
    pad_m = np.pad(mask, 1, constant_values=False)
    pad_d = np.pad(d, 1, constant_values=0.0)
    edge = np.zeros_like(mask)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            m = pad_m[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
            z = pad_d[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
            edge |= m != mask
            both = m & mask
            edge |= both & (np.abs(z - d) > jump)
    return edge


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def compare(v, f, colors, K, R, t, W, H, jump):
    ours, mask, depth = (x[0].numpy() for x in render_codes(
        torch.tensor(v[None], dtype=torch.float32), f, colors, K, R, t, W, H,
        return_mask=True, return_depth=True))
    with opengl.OSMesaRenderer(W, H) as gl:
        ref = gl.render(v, f, colors, K, R, t)
    diff = np.abs(ours.astype(int) - ref.astype(int)).max(-1)
    ref_mask = ref.any(-1)
    edge = edge_pixels(mask, depth, jump) | edge_pixels(ref_mask, np.zeros(ref_mask.shape), jump)
    print(f"PSNR {psnr(ours, ref):.1f} dB; pixels differing > 1: {(diff > 1).sum()} "
          f"({(diff[~edge] > 1).sum()} off edges) of {mask.sum()} covered")
    return ours, ref, diff, edge, mask


def test_figure_matches_opengl_flat_rendering():
    v, f = figure()
    colors = quantize((v - v.min(0)) / np.ptp(v, 0))
    W, H = 320, 256
    K = official_intrinsics(W, H)
    # Three-quarter view from the front and a little above, arms partly in front of the torso.
    a, e = 0.6, 0.25
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    R = FRONT_VIEW @ Rx @ Ry
    t = np.array([0.0, 0.0, K[1, 1] * 2.2 / H])
    ours, ref, diff, edge, mask = compare(v, f, colors, K, R, t, W, H, jump=0.02)
    assert mask.mean() > 0.05  # the figure fills a good part of the frame
    assert psnr(ours, ref) >= 40.0
    assert (ours.any(-1) == ref.any(-1))[~edge].all()
    assert (diff[~edge] <= 1).all(), f"{(diff[~edge] > 1).sum()} interior pixels differ by more than 1"
    assert (diff > 1).sum() < 0.01 * mask.sum()


def test_random_triangles_with_near_plane_crossings_match_opengl():
    rng = np.random.default_rng(7)
    T = 300
    centres = rng.uniform([-1.5, -1.0, -0.5], [1.5, 1.0, 6.0], size=(T, 1, 3))
    v = (centres + rng.normal(scale=0.6, size=(T, 3, 3))).reshape(-1, 3)
    f = np.arange(3 * T).reshape(T, 3)
    colors = quantize(rng.uniform(size=(3 * T, 3)))
    W, H = 200, 150
    K = np.array([[160.0, 0.0, W / 2], [0.0, 170.0, H / 2], [0.0, 0.0, 1.0]])
    assert ((v[f, 2] < opengl.ZNEAR).any(1) & (v[f, 2] > opengl.ZNEAR).any(1)).sum() > 10
    ours, ref, diff, edge, mask = compare(v, f, colors, K, np.eye(3), np.zeros(3), W, H, jump=1e-3)
    assert mask.mean() > 0.5
    assert psnr(ours, ref) >= 40.0
    assert (diff[~edge] <= 1).all()
    assert (diff > 1).sum() < 0.002 * mask.sum()
