"""The fast schedule's shortcuts and the quality presets on tiny random weights (CPU).

Each shortcut is checked to change what it should and nothing else, and to be bit-identical to
fast mode when off; the multistep solvers are checked to converge to DDIM's result at many steps.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mimo.errors import FieldError
from mimo.models import kernels
from mimo.models.blocks import DeepCacheSlot, pool_bank, pool_tokens
from mimo.pipeline.memory import low_memory_frames
from mimo.pipeline.pipeline import MimoPipeline
from mimo.pipeline.presets import PRESETS, Preset, Shortcuts

H = W = 32
F = 6


@pytest.fixture(scope="module")
def pipe(tiny_weights):
    return MimoPipeline.from_pretrained(tiny_weights, device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(1)
    char = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    codes = np.zeros((F, H, W, 3), np.uint8)
    for i in range(F):
        codes[i, 6:26, 9 + i:20 + i] = rng.integers(30, 256, 3)
    scene = rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8)
    return char, codes, scene


def _fast(**shortcuts) -> Preset:
    return Preset("test", "fast", context=4, overlap=2, steps=3, summary="test",
                  shortcuts=Shortcuts(**shortcuts))


def _run(pipe, inputs, mode, latents=None, **kw):
    char, codes, scene = inputs
    kw = dict(dict(height=H, width=W, seed=3), **kw)
    if latents is not None:
        kw["callback_on_step_end"] = lambda p, step, t, info: latents.__setitem__(0, info["latents"])
    return pipe(char, codes, scene, mode=mode, **kw)


@pytest.fixture(scope="module")
def fast_out(pipe, inputs):
    return _run(pipe, inputs, _fast())


class _RowCounter:
    """Batch rows of every denoising-UNet call, and whether its deep blocks ran."""

    def __init__(self, unet):
        self.rows, self.deep = [], 0
        self.hooks = [unet.register_forward_pre_hook(lambda m, a: self.rows.append(a[0].shape[0])),
                      unet.down_blocks[1].register_forward_hook(lambda *a: setattr(self, "deep", self.deep + 1))]

    def remove(self):
        for h in self.hooks:
            h.remove()


# --- presets ----------------------------------------------------------------------------------

def test_presets_list_their_deviations():
    assert {"exact", "fast", "balanced", "draft"} <= set(PRESETS)
    assert PRESETS["exact"].deviations == [] and PRESETS["exact"].shortcuts == Shortcuts()
    assert PRESETS["fast"].shortcuts == Shortcuts()
    for name in ("balanced", "draft"):
        p = PRESETS[name]
        assert p.schedule == "fast" and len(p.deviations) >= 1 + len(p.shortcuts.deviations) >= 3
    with pytest.raises(ValueError, match="shortcuts"):
        Preset("x", "exact", 24, 4, 25, "x", Shortcuts(kv_pool=2))
    for bad in (dict(guidance_interval=(900, 100)), dict(guidance_interval=[0, 800]),
                dict(guidance_interval=5), dict(guidance_interval=(True, 500)), dict(kv_pool=2.0),
                dict(kv_pool=True), dict(reuse_interval=True), dict(reuse_interval=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Shortcuts(**bad)
    for field, value in (("steps", 0), ("context", 33), ("overlap", 24)):
        with pytest.raises(ValueError, match=field):
            Preset("x", "fast", **{"context": 24, "overlap": 4, "steps": 25, field: value}, summary="x")


def test_unknown_mode_names_the_field(pipe, inputs):
    with pytest.raises(FieldError, match="mode: expected one of exact, fast, balanced, draft") as err:
        _run(pipe, inputs, "turbo", num_inference_steps=1)
    assert err.value.field == "mode"


@pytest.mark.parametrize("name", ["balanced", "draft"])
def test_presets_run_end_to_end(pipe, inputs, name):
    out = _run(pipe, inputs, name)
    assert out.frames.shape == (F, H, W, 3) and np.isfinite(out.frames).all()
    assert out.stats["mode"] == name and out.stats["steps"] == PRESETS[name].steps


def test_every_shortcut_off_is_fast_mode_bit_for_bit(pipe, inputs, fast_out):
    plain = Preset("fast", "fast", context=4, overlap=2, steps=3, summary="")
    np.testing.assert_array_equal(_run(pipe, inputs, plain).frames, fast_out.frames)
    # a guidance interval covering every timestep is guidance everywhere
    np.testing.assert_array_equal(_run(pipe, inputs, _fast(guidance_interval=(0, 999))).frames, fast_out.frames)


# --- samplers ---------------------------------------------------------------------------------

def test_multistep_solvers_converge_to_ddim_at_many_steps(pipe, inputs):
    """DDIM with 200 steps as the ODE's solution; DPM-Solver++ 2M and UniPC get closer to it as
    their steps grow, and with 10 steps are closer than DDIM with 10 (higher order)."""
    def final(solver, steps):
        box = [None]
        _run(pipe, inputs, _fast(solver=solver), box, num_inference_steps=steps, context_frames=F)
        return box[0]

    truth = final("ddim", 200)
    ddim10 = (final("ddim", 10) - truth).abs().mean().item()
    for solver in ("dpm++2m", "unipc"):
        errs = [(final(solver, n) - truth).abs().mean().item() for n in (5, 10, 20)]
        assert errs[0] > errs[1] > errs[2], (solver, errs)
        assert errs[1] < ddim10, (solver, errs, ddim10)
        assert errs[2] < 0.25 * errs[0], (solver, errs)


# --- guidance interval ------------------------------------------------------------------------

def test_guidance_interval_skips_the_unconditional_half_outside(pipe, inputs, fast_out):
    count = _RowCounter(pipe.denoising_unet)
    try:  # 3 steps: 999, 666, 333; guidance off at 999 only
        out = _run(pipe, inputs, _fast(guidance_interval=(0, 700)))
    finally:
        count.remove()
    # windows [0..3], [2..5] share a call: 2 windows x 1 half at step 999, then 2 x 2
    assert count.rows == [2, 4, 4]
    assert np.abs(out.frames - fast_out.frames).max() > 1e-3
    # the skipped half is exactly CFG at scale 1 (v_u + 1 (v_c - v_u) = v_c up to rounding)
    guided = _run(pipe, inputs, _fast(), guidance_scale=1.0).frames
    skipped = _run(pipe, inputs, _fast(guidance_interval=(0, 0)), guidance_scale=1.0).frames
    np.testing.assert_allclose(skipped, guided, atol=1e-5)


# --- feature reuse ----------------------------------------------------------------------------

def test_reuse_step_on_the_same_input_reproduces_the_full_call(pipe):
    """The shallow path fed the deep feature of a full call on the same input gives that call's
    output exactly: the cached tensor and the skips are wired where the full trunk has them."""
    unet = pipe.denoising_unet
    g = torch.Generator().manual_seed(0)
    c0, d = unet.config.block_out_channels[0], unet.config.cross_attention_dim
    x, pose = torch.randn(2, 8, 3, 5, 5, generator=g), torch.randn(2, c0, 3, 5, 5, generator=g)
    clip = torch.randn(2, 1, d, generator=g)
    with torch.no_grad():
        bank = pipe.reference_unet.write(torch.randn(1, 4, 5, 5, generator=g), 0, clip[1:])
        slot = DeepCacheSlot()
        full = unet(x, 500, clip, pose_cond=pose, reference=bank, reference_rows=[False, True], deep_cache=slot)
        plain = unet(x, 500, clip, pose_cond=pose, reference=bank, reference_rows=[False, True])
        reused = unet(x, 500, clip, pose_cond=pose, reference=bank, reference_rows=[False, True],
                      deep_cache=DeepCacheSlot(reuse=True, feature=slot.feature))
        other_t = unet(x, 100, clip, pose_cond=pose, reference=bank, reference_rows=[False, True],
                       deep_cache=DeepCacheSlot(reuse=True, feature=slot.feature))
    torch.testing.assert_close(full, plain, atol=0, rtol=0)
    torch.testing.assert_close(reused, full, atol=1e-6, rtol=1e-5)
    assert (other_t - full).abs().max() > 1e-4  # the shallow blocks do run on the new timestep


def test_reuse_interval_runs_the_deep_blocks_every_kth_step(pipe, inputs, fast_out):
    count = _RowCounter(pipe.denoising_unet)
    try:
        out = _run(pipe, inputs, _fast(reuse_interval=2), num_inference_steps=5)
    finally:
        count.remove()
    assert len(count.rows) == 5 and count.deep == 3  # steps 0, 2, 4 in full
    assert np.isfinite(out.frames).all()
    full = _run(pipe, inputs, _fast(), num_inference_steps=5).frames
    assert np.abs(out.frames - full).max() > 1e-4
    # with a guidance interval the layout changes at step 1: that step runs in full too
    count = _RowCounter(pipe.denoising_unet)
    try:  # 5 steps: 999, 799, 599, 399, 199; guidance from 799 on
        _run(pipe, inputs, _fast(reuse_interval=2, guidance_interval=(0, 800)), num_inference_steps=5)
    finally:
        count.remove()
    # full: 0, 1 (the layout changed), 2 and 4; step 3 reuses
    assert count.rows == [2, 4, 4, 4, 4] and count.deep == 4


def test_reuse_keeps_features_beyond_the_budget_off_the_device(pipe, inputs, monkeypatch):
    """With one window per call (2 groups) and a budget of one group's feature, each group's
    feature waits in a host buffer between its calls and is read back from there at the reuse
    steps; the frames are exactly those of a cache that keeps everything on the device."""
    from mimo.pipeline import fast, shortcuts

    made = []

    class Recording(shortcuts.FeatureCache):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.fetched = []
            made.append(self)

        def fetch(self, group):  # (group, whether its feature came from a host buffer)
            self.fetched.append((group, self.slots[group][1].feature is self.away.get(group)))
            return super().fetch(group)

    monkeypatch.setattr(fast, "FeatureCache", Recording)
    mode, run = _fast(reuse_interval=2), dict(num_inference_steps=5, windows_per_call=1)
    kept = _run(pipe, inputs, mode, **run).frames
    c1 = pipe.denoising_unet.config.block_out_channels[1]
    one = 2 * 4 * c1 * (H // 8) * (W // 8) * 4  # 2 CFG rows x 4 frames, float32, at h/8 x w/8
    monkeypatch.setattr(shortcuts, "DEEP_CACHE_GPU_BUDGET", one)
    moved = _run(pipe, inputs, mode, **run).frames
    unbounded, cache = made
    assert len(unbounded.slots) == 2 and not unbounded.away
    assert unbounded.fetched == [(0, False), (1, False)] * 2  # steps 1 and 3 reuse
    assert set(cache.away) == {0, 1} and all(b.numel() * 4 == one for b in cache.away.values())
    assert cache.fetched == [(0, True), (1, True)] * 2
    np.testing.assert_array_equal(moved, kept)
    monkeypatch.setattr(shortcuts, "DEEP_CACHE_GPU_BUDGET", 2 * one)  # both fit: nothing moves
    _run(pipe, inputs, mode, **run)
    assert not made[-1].away and made[-1].fetched == [(0, False), (1, False)] * 2
    # low-memory mode keeps none on the device, whatever the budget (each CFG half is its own slot)
    low = MimoPipeline(pipe.vae, pipe.image_encoder, pipe.reference_unet, pipe.denoising_unet, pipe.pose_guider,
                       device="cpu", dtype=torch.float32, low_memory=True)
    np.testing.assert_allclose(_run(low, inputs, mode, **run).frames, kept, atol=1e-4)
    assert set(made[-1].away) == {(g, k) for g in (0, 1) for k in (0, 1)}


# --- pooled keys ------------------------------------------------------------------------------

def test_pool_tokens_averages_cells():
    x = torch.arange(2 * 16 * 3, dtype=torch.float32).view(2, 16, 3)
    grid = x.view(2, 4, 4, 3)
    want = grid.view(2, 2, 2, 2, 2, 3).mean(dim=(2, 4)).reshape(2, 4, 3)
    torch.testing.assert_close(pool_tokens(x, (4, 4), 2), want)
    assert pool_tokens(torch.zeros(1, 15, 2), (3, 5), 2).shape == (1, 6, 2)  # ceil: 2 x 3 cells


def test_kv_pool_attends_to_pooled_keys_at_the_highest_resolution_only(pipe):
    """Block level: the query rows see keys/values from the pooled own tokens and the pooled
    reference, computed by hand; UNet level: with kv_pool 1 nothing changes, and only the
    level-0 bank entries are pooled."""
    from mimo.models.blocks import RefContext, ReferenceBank, attention

    unet = pipe.denoising_unet
    block = unet.down_blocks[0].attentions[0].transformer_blocks[0]
    c = block.norm1.normalized_shape[0]
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 16, c, generator=g)   # 2 frames, 4 x 4 tokens
    ref_tokens = torch.randn(1, 16, c, generator=g)
    bank = pool_bank(ReferenceBank({block.block_path: ref_tokens}), (4, 4), 2)
    ref = RefContext(read=bank, frames=2, kv_pool=2, kv_pool_hw=(4, 4))
    with torch.no_grad():
        got = block._read_attention(block.norm1(h), ref, (4, 4), 2)
        n = block.norm1(h)
        kv = torch.cat([pool_tokens(n, (4, 4), 2), pool_tokens(ref_tokens, (4, 4), 2).expand(2, -1, -1)], 1)
        want = attention(block.attn1, n, kv)
    torch.testing.assert_close(got, want)
    assert bank.tensors[block.block_path].shape == (1, 4, c)
    lower = ReferenceBank({"a": torch.zeros(1, 4, 2), "b": torch.zeros(1, 16, 2)})
    assert pool_bank(lower, (4, 4), 2).tensors["a"].shape == (1, 4, 2)  # a lower level: unchanged


def test_kv_pool_changes_the_frames_and_is_off_at_1(pipe, inputs, fast_out):
    pooled = _run(pipe, inputs, _fast(kv_pool=2))
    assert np.abs(pooled.frames - fast_out.frames).max() > 1e-4 and np.isfinite(pooled.frames).all()


# --- attention kernels ------------------------------------------------------------------------

def test_flash_kernels_missing_give_one_clear_line(pipe, inputs, monkeypatch):
    import sys

    kernels._module.cache_clear()
    for module in ("fa3_fwd_interface", "flash_attn.cute"):  # None in sys.modules: the import fails
        monkeypatch.setitem(sys.modules, module, None)
    for name, package in (("fa4", "flash-attn-4"), ("fa3", "fa3-fwd")):
        with pytest.raises(FieldError, match=f"pip install {package}") as err:
            _run(pipe, inputs, _fast(attention=name), num_inference_steps=1)
        assert err.value.field == "attention"
    kernels._module.cache_clear()


def test_flash_kernel_layout_and_fallback(monkeypatch):
    """The flash call path (layout (S, N, heads, d), head width padded to a multiple of 8, scale
    of the true width) against SDPA, with a stand-in for the CUDA-only kernel that computes
    attention in that layout; CPU tensors otherwise fall back to SDPA untouched."""
    import types

    def flash_attn_func(q, k, v, softmax_scale):
        s = torch.einsum("bnhd,bmhd->bhnm", q, k) * softmax_scale
        return torch.einsum("bhnm,bmhd->bnhd", s.softmax(-1), v), None

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(3, 2, n, 12, generator=g) for n in (5, 7, 7))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(kernels.sdpa(q, k, v, "fa4"), want, atol=0, rtol=0)  # CPU: SDPA itself
    kernels._module.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "fa3_fwd_interface",
                        types.SimpleNamespace(flash_attn_func=flash_attn_func))
    monkeypatch.setattr(kernels, "supported", lambda name, q: True)
    torch.testing.assert_close(kernels.sdpa(q, k, v, "fa3"), want, atol=1e-5, rtol=1e-5)
    kernels._module.cache_clear()


# --- low memory -------------------------------------------------------------------------------

def test_low_memory_frames_estimate():
    from mimo.models import SD15_UNET, DenoisingUNet

    with torch.device("meta"):
        unet = DenoisingUNet(SD15_UNET).to(torch.bfloat16)
    assert low_memory_frames(unet, 98, 98, torch.bfloat16) >= 32     # 784²: full windows fit 8 GB
    assert 8 <= low_memory_frames(unet, 196, 196, torch.bfloat16) < 16  # 1568²: windows shrink
    assert low_memory_frames(unet, 98, 98, torch.bfloat16, budget=1 << 30) == 1


def test_low_memory_splits_cfg_halves_and_shrinks_windows_without_changing_values(tiny_weights, inputs):
    pipe = MimoPipeline.from_pretrained(tiny_weights, device="cpu", dtype="fp32", low_memory=True)
    ref = MimoPipeline.from_pretrained(tiny_weights, device="cpu", dtype="fp32")
    count = _RowCounter(pipe.denoising_unet)
    try:
        low = _run(pipe, inputs, _fast())
    finally:
        count.remove()
    assert set(count.rows) == {1} and low.stats["windows_per_call"] == 1
    np.testing.assert_allclose(low.frames, _run(ref, inputs, _fast(), windows_per_call=1).frames, atol=1e-4)
    # a budget that holds 3 frames of activations: 3-frame windows, overlap kept below them
    per_frame = 23 * pipe.denoising_unet.config.block_out_channels[0] * (H // 8) * (W // 8) * 4
    from mimo.pipeline.memory import HEADROOM, network_bytes

    pipe.memory_budget = network_bytes(pipe.denoising_unet) + HEADROOM + 3 * per_frame
    shrunk = _run(pipe, inputs, _fast())
    assert shrunk.stats["windows"] == 4  # [0..2], [1..3], [2..4], [3..5] (overlap 2)
    want = _run(ref, inputs, dataclasses.replace(_fast(), context=3), windows_per_call=1)
    np.testing.assert_allclose(shrunk.frames, want.frames, atol=1e-4)


def test_fast_previews_run_in_half_precision_on_cpu(tiny_weights, inputs):
    # antialiased resizing has no bf16/fp16 kernel on CPU: the preview halves the latent in fp32
    half = MimoPipeline.from_pretrained(tiny_weights, device="cpu", dtype="bf16")
    seen = []
    out = _run(half, inputs, _fast(), num_inference_steps=2, preview_every=1,
               preview_callback=lambda step, picks, images: seen.append(images))
    assert len(seen) == 2 and seen[0][0].dtype == np.uint8 and np.isfinite(out.frames).all()
