"""The lean block forwards equal diffusers' own, and the blocks are fit for torch.compile.

The compiled (inductor) path itself needs CUDA: its check is in test_models_gpu.py.
"""
from __future__ import annotations

import pytest
import torch
from diffusers.models.resnet import ResnetBlock2D
from test_models_math import randomise

from mimo.models import TINY_UNET, DenoisingUNet, ReferenceUNet
from mimo.models.blocks import ResnetBlock, TemporalAttention, attention
from mimo.models.compile import BLOCK_TYPES, can_compile, compile_blocks, is_compiled, run_compiled, uncompile_blocks


@pytest.mark.parametrize("cin,cout", [(16, 16), (16, 24)])
@pytest.mark.parametrize("temb_rows", [1, 3])
@torch.no_grad()
def test_resnet_block_matches_diffusers_forward(cin, cout, temb_rows):
    block = randomise(ResnetBlock(cin, cout, temb_channels=20, eps=1e-5, groups=4), seed=cin + cout)
    x = torch.randn(3, cin, 6, 5)
    temb = torch.randn(temb_rows, 20)
    want = ResnetBlock2D.forward(block, x, temb.expand(3, -1))  # diffusers' forward, per-row temb
    assert torch.allclose(block(x, temb), want, atol=1e-5)


@torch.no_grad()
def test_attention_function_matches_diffusers_processor():
    attn = randomise(TemporalAttention(16, heads=4), seed=3)
    x, kv = torch.randn(5, 7, 16), torch.randn(5, 9, 16)
    for other in (None, kv):
        got = attention(attn, x, other)
        ref = super(TemporalAttention, attn).forward(x, encoder_hidden_states=other)
        assert torch.allclose(got, ref, atol=1e-5)


def _unet_inputs():
    g = torch.Generator().manual_seed(0)
    c0, d = TINY_UNET.block_out_channels[0], TINY_UNET.cross_attention_dim
    return (torch.randn(2, 8, 3, 8, 8, generator=g), torch.randn(2, c0, 3, 8, 8, generator=g),
            torch.randn(2, 1, d, generator=g), torch.randn(1, 4, 8, 8, generator=g))


@torch.no_grad()
def test_every_block_traces_as_one_graph():
    """dynamo captures each ResNet, spatial transformer and motion module whole (fullgraph=True):
    a graph break would split the fused kernels that compile_blocks exists for."""
    torch._dynamo.reset()
    ref_unet, unet = ReferenceUNet(TINY_UNET).eval(), DenoisingUNet(TINY_UNET).eval()
    x, pose, clip, ref = _unet_inputs()
    bank = ref_unet.write(ref, 0, clip[1:])
    eager = unet(x, 999, clip, pose_cond=pose, reference=bank, reference_rows=[False, True])
    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = 256
    try:
        blocks = [m for m in unet.modules() if isinstance(m, BLOCK_TYPES)]
        for m in blocks:
            m.compile(backend="eager", fullgraph=True)
        assert is_compiled(unet) and len(blocks) == 22 + 16 + 21  # resnets, transformers, motion modules
        traced = unet(x, 999, clip, pose_cond=pose, reference=bank, reference_rows=[False, True])
        with run_compiled(False):  # force_eager stance: the plain forwards
            plain = unet(x, 999, clip, pose_cond=pose, reference=bank, reference_rows=[False, True])
    finally:
        torch._dynamo.config.recompile_limit = limit
        uncompile_blocks(unet)
        torch._dynamo.reset()
    assert torch.equal(traced, eager) and torch.equal(plain, eager)


def test_compile_blocks_refuses_cpu_with_a_reason():
    ok, why = can_compile("cpu")
    assert not ok and "CUDA" in why
    with pytest.raises(ValueError, match="CUDA"):
        compile_blocks(DenoisingUNet(TINY_UNET))
