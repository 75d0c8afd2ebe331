"""Module math against direct implementations of the formulas of docs/MIMO.md (§2.2, §3, §3.3,
§4, §5)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mimo.models import TINY_UNET, DenoisingUNet, PoseGuider, ReferenceBank, ReferenceUNet, sinusoidal_pe
from mimo.models.blocks import MotionModule, RefContext, TransformerBlock, row_runs


@pytest.fixture(scope="module", autouse=True)
def _no_grad():
    """Forward passes only, without autograd, while this module's tests run. (A module-level
    ``torch.set_grad_enabled(False)`` ran at collection and switched autograd off for the whole
    session, so tests that train, in any module, failed when run together with this one.)"""
    with torch.no_grad():
        yield


def randomise(module: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Random values in every parameter (incl. zero-init ones), LayerNorm/GN scales around 1."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=g) * std
        p.copy_(1 + noise if ("norm" in name and name.endswith("weight")) else noise)
    return module.eval()


# --- direct implementations of docs/MIMO.md ----------------------------------------------------

def layer_norm(x, mod, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * mod.weight + mod.bias


def group_norm_per_frame(x, mod, eps):
    """x (R, C, H, W): statistics over (C/G, H, W) of each row (= one frame)."""
    r, c, h, w = x.shape
    g = x.reshape(r, mod.num_groups, -1)
    mu = g.mean(-1, keepdim=True)
    var = ((g - mu) ** 2).mean(-1, keepdim=True)
    y = ((g - mu) / torch.sqrt(var + eps)).reshape(r, c, h, w)
    return y * mod.weight[:, None, None] + mod.bias[:, None, None]


def mha(x, kv, attn):
    """Multi-head attention, q from x, k/v from kv, written out with softmax."""
    heads = attn.heads
    q, k, v = x @ attn.to_q.weight.T, kv @ attn.to_k.weight.T, kv @ attn.to_v.weight.T
    s, lq, c = q.shape
    d = c // heads
    q = q.reshape(s, lq, heads, d).transpose(1, 2)
    k = k.reshape(s, -1, heads, d).transpose(1, 2)
    v = v.reshape(s, -1, heads, d).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    o = (w @ v).transpose(1, 2).reshape(s, lq, c)
    return o @ attn.to_out[0].weight.T + attn.to_out[0].bias


def geglu_ff(x, ff):
    proj, out = ff.net[0].proj, ff.net[2]
    value, gate = (x @ proj.weight.T + proj.bias).chunk(2, dim=-1)
    gelu = 0.5 * gate * (1 + torch.erf(gate / math.sqrt(2)))  # exact GELU
    return (value * gelu) @ out.weight.T + out.bias


def pe_formula(channels, length):
    pe = torch.zeros(1, length, channels, dtype=torch.float64)
    for p in range(length):
        for i in range(channels // 2):
            pe[0, p, 2 * i] = math.sin(p * 10000 ** (-2 * i / channels))
            pe[0, p, 2 * i + 1] = math.cos(p * 10000 ** (-2 * i / channels))
    return pe.float()


def motion_reference(x5, mm):
    """Spec §3.3 pseudo-code, x5 (B, C, F, H, W)."""
    tt = mm.temporal_transformer
    blk = tt.transformer_blocks[0]
    b, c, f, hh, ww = x5.shape
    x = x5.permute(0, 2, 1, 3, 4).reshape(b * f, c, hh, ww)
    h = group_norm_per_frame(x, tt.norm, 1e-6).reshape(b * f, c, hh * ww).transpose(1, 2)
    h = h @ tt.proj_in.weight.T + tt.proj_in.bias
    pe = pe_formula(c, 32)
    for attn, norm in zip(blk.attention_blocks, blk.norms):
        n = layer_norm(h, norm)
        t = n.reshape(b, f, hh * ww, c).permute(0, 2, 1, 3).reshape(b * hh * ww, f, c) + pe[:, :f]
        a = mha(t, t, attn)
        h = h + a.reshape(b, hh * ww, f, c).permute(0, 2, 1, 3).reshape(b * f, hh * ww, c)
    h = h + geglu_ff(layer_norm(h, blk.ff_norm), blk.ff)
    h = h @ tt.proj_out.weight.T + tt.proj_out.bias
    out = h.transpose(1, 2).reshape(b * f, c, hh, ww) + x
    return out.reshape(b, f, c, hh, ww).permute(0, 2, 1, 3, 4)


# --- tests ----------------------------------------------------------------------------------------

def test_positional_encoding_matches_formula():
    for c in (16, 320):
        assert torch.allclose(sinusoidal_pe(c), pe_formula(c, 32), atol=2e-5)  # fp32 rounding of p*freq


def test_motion_module_matches_spec_pseudocode():
    mm = randomise(MotionModule(16, groups=4))
    x5 = torch.randn(2, 16, 5, 3, 2)
    folded = x5.permute(0, 2, 1, 3, 4).reshape(10, 16, 3, 2)
    got = mm(folded, frames=5).reshape(2, 5, 16, 3, 2).permute(0, 2, 1, 3, 4)
    want = motion_reference(x5, mm)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    # the PE matters: a module without it gives a different answer
    mm.temporal_transformer.transformer_blocks[0].attention_blocks[0].pos_encoder.pe.zero_()
    assert not torch.allclose(mm(folded, frames=5).reshape(2, 5, 16, 3, 2).permute(0, 2, 1, 3, 4), want, atol=1e-3)


def test_motion_module_rejects_more_than_32_frames():
    mm = MotionModule(16, groups=4).eval()
    with pytest.raises(ValueError, match="at most 32 frames"):
        mm(torch.randn(33, 16, 1, 1), frames=33)


def _block_reference(h, context, bank, rows, frames, blk):
    """Spec §5 read: rows that read attend over concat(own, bank) tokens, the others plain."""
    n = layer_norm(h, blk.norm1)
    out = []
    for r in range(h.shape[0]):
        b = r // frames
        kv = torch.cat([n[r:r + 1], bank[b:b + 1]], 1) if rows[b] else n[r:r + 1]
        out.append(mha(n[r:r + 1], kv, blk.attn1))
    h = torch.cat(out) + h
    h = mha(layer_norm(h, blk.norm2), context, blk.attn2) + h
    return geglu_ff(layer_norm(h, blk.norm3), blk.ff) + h


def test_reference_read_is_attention_over_concatenated_kv_and_uncond_rows_plain():
    blk = randomise(TransformerBlock(16, heads=4, cross_attention_dim=8))
    blk.block_path = "p"
    frames, tokens = 3, 5
    h = torch.randn(2 * frames, tokens, 16)
    context = torch.randn(2 * frames, 1, 8)
    bank = torch.randn(2, tokens, 16)
    rows = torch.tensor([False, True])
    ref = RefContext(read=ReferenceBank({"p": bank}), runs=row_runs(rows), frames=frames)
    got = blk(h, context, ref)
    assert torch.allclose(got, _block_reference(h, context, bank, rows, frames, blk), atol=1e-5)
    # the official order (all rows read, then the uncond rows recomputed) gives the same result
    all_read = blk(h, context, RefContext(read=ReferenceBank({"p": bank}), frames=frames))
    plain = blk(h, context, RefContext(frames=frames))
    official = torch.cat([plain[:frames], all_read[frames:]])
    assert torch.allclose(got, official, atol=1e-6)
    assert not torch.allclose(all_read[:frames], plain[:frames], atol=1e-3)


def test_writer_stores_norm1_output_under_its_path():
    blk = randomise(TransformerBlock(16, heads=4, cross_attention_dim=8))
    blk.block_path = "down_blocks.0.attentions.0.transformer_blocks.0"
    h = torch.randn(2, 5, 16)
    bank = {}
    blk(h, torch.randn(2, 1, 8), RefContext(write=bank))
    assert list(bank) == [blk.block_path]
    assert torch.allclose(bank[blk.block_path], layer_norm(h, blk.norm1), atol=1e-6)


@pytest.fixture(scope="module")
def tiny_unets():
    torch.manual_seed(0)
    return randomise(ReferenceUNet(TINY_UNET), 1, 0.05), randomise(DenoisingUNet(TINY_UNET), 2, 0.05)


def test_unet_reference_pairing_and_uncond_rows(tiny_unets):
    ref_unet, den = tiny_unets
    h = w = 8
    clip = torch.randn(2, 1, 32)
    bank = ref_unet.write(torch.randn(2, 4, h, w), 0, clip)
    assert sorted(bank.tensors) == sorted(den.transformer_block_paths)
    assert bank.tensors["down_blocks.0.attentions.0.transformer_blocks.0"].shape == (2, h * w, 32)
    sample, pose = torch.randn(2, 8, 3, h, w), torch.randn(2, 32, 3, h, w)
    v = den(sample, 500, clip, pose_cond=pose, reference=bank, reference_rows=[False, True])
    assert v.shape == (2, 4, 3, h, w)
    plain0 = den(sample[:1], 500, clip[:1], pose_cond=pose[:1])
    read1 = den(sample[1:], 500, clip[1:], pose_cond=pose[1:], reference=bank.select_rows([1]))
    assert torch.allclose(v[:1], plain0, atol=1e-5)
    assert torch.allclose(v[1:], read1, atol=1e-5)
    assert not torch.allclose(read1, den(sample[1:], 500, clip[1:], pose_cond=pose[1:]), atol=1e-4)
    missing = ReferenceBank({k: t for k, t in bank.tensors.items() if not k.startswith("mid_block")})
    with pytest.raises(ValueError, match="no entry for block 'mid_block"):
        den(sample, 500, clip, reference=missing)


def test_per_frame_groupnorm_and_frame_independence_without_motion(tiny_unets):
    _, den = tiny_unets
    sample, clip = torch.randn(1, 8, 3, 8, 8) * 3, torch.randn(1, 1, 32)
    sample[:, :, 1] += 5  # frames with very different statistics
    saved = {n: (m.weight.clone(), m.bias.clone()) for n, m in den.named_modules() if n.endswith("temporal_transformer.proj_out")}
    with_motion = den(sample, 10, clip)
    try:
        for n, m in den.named_modules():
            if n.endswith("temporal_transformer.proj_out"):
                m.weight.zero_(), m.bias.zero_()  # motion modules become identities
        video = den(sample, 10, clip)
        for f in range(3):
            single = den(sample[:, :, f:f + 1], 10, clip)
            assert torch.allclose(video[:, :, f:f + 1], single, atol=1e-5)
    finally:
        for n, m in den.named_modules():
            if n in saved:
                m.weight.copy_(saved[n][0]), m.bias.copy_(saved[n][1])
    assert not torch.allclose(with_motion[:, :, 0:1], den(sample[:, :, 0:1], 10, clip), atol=1e-4)


def test_upsample_to_exact_skip_size_at_odd_latent_sizes(tiny_unets):
    ref_unet, _ = tiny_unets
    seen = []

    def hook(module, args):
        seen.append(args[0])

    handles = []
    for block in ref_unet.up_blocks[:-1]:
        handles.append(block.upsamplers[0].register_forward_pre_hook(hook))
        handles.append(block.upsamplers[0].conv.register_forward_pre_hook(hook))
    try:
        ref_unet.write(torch.randn(1, 4, 26, 26), 0, torch.randn(1, 1, 32))
    finally:
        for hd in handles:
            hd.remove()
    pairs = [(seen[i], seen[i + 1]) for i in range(0, len(seen), 2)]
    assert [(a.shape[-1], b.shape[-1]) for a, b in pairs] == [(4, 7), (7, 13), (13, 26)]
    for a, b in pairs:  # PyTorch legacy nearest: source index = floor(dst * in / out)
        n_in, n_out = a.shape[-1], b.shape[-1]
        idx = torch.tensor([math.floor(d * n_in / n_out) for d in range(n_out)])
        assert torch.equal(b, a[:, :, idx][:, :, :, idx])


def test_timestep_embedding_is_flipped_sinusoid(tiny_unets):
    ref_unet, _ = tiny_unets
    half = 16
    t = 999
    freqs = torch.tensor([math.exp(-math.log(10000) * k / half) for k in range(half)])
    want = torch.cat([torch.cos(t * freqs), torch.sin(t * freqs)])
    assert torch.allclose(ref_unet.time_proj(torch.tensor([t]))[0], want, atol=1e-4)


def test_pose_guider_matches_conv_chain():
    pg = randomise(PoseGuider(32), std=0.1)
    codes = torch.rand(2, 3, 2, 32, 24)
    x = codes.permute(0, 2, 1, 3, 4).reshape(4, 3, 32, 24)
    x = F.silu(F.conv2d(x, pg.conv_in.weight, pg.conv_in.bias, padding=1))
    for k, conv in enumerate(pg.blocks):
        x = F.silu(F.conv2d(x, conv.weight, conv.bias, padding=1, stride=2 if k % 2 else 1))
    x = F.conv2d(x, pg.conv_out.weight, pg.conv_out.bias, padding=1)
    got = pg(codes)
    assert got.shape == (2, 32, 2, 4, 3)
    assert torch.allclose(got, x.reshape(2, 2, 32, 4, 3).permute(0, 2, 1, 3, 4), atol=1e-5)


def test_bad_inputs_name_the_argument(tiny_unets):
    ref_unet, den = tiny_unets
    with pytest.raises(ValueError, match=r"sample: expected shape \(\*, 8, \*, \*, \*\), got \(1, 4, 2, 8, 8\)"):
        den(torch.randn(1, 4, 2, 8, 8), 0, torch.randn(1, 1, 32))
    with pytest.raises(ValueError, match="pose_cond"):
        den(torch.randn(1, 8, 2, 8, 8), 0, torch.randn(1, 1, 32), pose_cond=torch.randn(1, 32, 3, 8, 8))
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        ref_unet.write(torch.randn(2, 4, 8, 8), 0, torch.randn(1, 1, 32))
    with pytest.raises(ValueError, match="reference_rows"):
        den(torch.randn(1, 8, 2, 8, 8), 0, torch.randn(1, 1, 32), reference_rows=[True])


def test_token_chunking_changes_no_value():
    """Feed-forwards and reference-reading attention split into row chunks give the same v."""
    from mimo.models import TINY_UNET, DenoisingUNet, ReferenceUNet
    from mimo.models.blocks import token_chunking

    torch.manual_seed(0)
    ref_unet, unet = ReferenceUNet(TINY_UNET).eval(), DenoisingUNet(TINY_UNET).eval()
    x = torch.randn(2, 8, 3, 8, 8)
    clip = torch.randn(2, 1, TINY_UNET.cross_attention_dim)
    pose = torch.randn(2, TINY_UNET.block_out_channels[0], 3, 8, 8)
    with torch.no_grad():
        bank = ref_unet.write(torch.randn(1, 4, 8, 8), 0, clip[1:])
        whole = unet(x, 500, clip, pose_cond=pose, reference=bank, reference_rows=[False, True])
        with token_chunking(40):  # far below one window: every FF and reading attention is split
            chunked = unet(x, 500, clip, pose_cond=pose, reference=bank, reference_rows=[False, True])
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="tokens"):
        with token_chunking(0):
            pass
