"""CUDA checks of the networks (run by the lead on the GPU machine; skipped without CUDA)."""
from __future__ import annotations

import pytest
import torch

from mimo.models import SD15_UNET, DenoisingUNet, load_mimo, make_tiny

pytestmark = pytest.mark.gpu


@torch.no_grad()
def test_tiny_fp16_cuda_matches_fp32_cpu(tmp_path):
    folder = make_tiny(tmp_path / "w", seed=1)
    cpu = load_mimo(folder, dtype=torch.float32)
    gpu = load_mimo(folder, device="cuda", dtype=torch.float16)
    g = torch.Generator().manual_seed(0)
    ref, clip = torch.randn(2, 4, 13, 13, generator=g), torch.randn(2, 1, 32, generator=g)
    sample, pose = torch.randn(2, 8, 5, 13, 13, generator=g), torch.randn(2, 32, 5, 13, 13, generator=g)
    outs = []
    for m, dev, dt in ((cpu, "cpu", torch.float32), (gpu, "cuda", torch.float16)):
        bank = m.reference_unet.write(ref.to(dev, dt), 0, clip.to(dev, dt))
        v = m.denoising_unet(sample.to(dev, dt), 999, clip.to(dev, dt), pose_cond=pose.to(dev, dt),
                             reference=bank, reference_rows=[False, True])
        outs.append(v.float().cpu())
    err = (outs[0] - outs[1]).norm() / outs[0].norm()
    assert err < 2e-2, err


@torch.no_grad()
def test_sd15_size_denoising_unet_on_cuda():
    with torch.device("cuda"):
        net = DenoisingUNet(SD15_UNET).half().eval()
    n = sum(v.numel() for k, v in net.state_dict().items() if not k.endswith(".pe"))
    assert n == 1_312_741_764
    x = torch.randn(2, 8, 4, 32, 32, device="cuda", dtype=torch.float16)
    v = net(x, 999, torch.randn(2, 1, 768, device="cuda", dtype=torch.float16))
    assert v.shape == (2, 4, 4, 32, 32) and torch.isfinite(v).all()


@torch.no_grad()
def test_compiled_blocks_match_eager_on_cuda():
    from mimo.models import TINY_UNET, ReferenceUNet
    from mimo.models.compile import compile_blocks, run_compiled, uncompile_blocks

    torch.manual_seed(0)
    with torch.device("cuda"):
        ref_unet = ReferenceUNet(TINY_UNET).half().eval()
        unet = DenoisingUNet(TINY_UNET).half().eval()
        x, pose = torch.randn(2, 8, 4, 16, 16).half(), torch.randn(2, 32, 4, 16, 16).half()
        clip, ref = torch.randn(2, 1, 32).half(), torch.randn(1, 4, 16, 16).half()
    bank = ref_unet.write(ref, 0, clip[1:])

    def call():
        return unet(x, 999, clip, pose_cond=pose, reference=bank, reference_rows=[False, True]).float()

    eager = call()
    try:
        assert compile_blocks(unet) == 59
        compiled = call()
        with run_compiled(False):
            again = call()
    finally:
        uncompile_blocks(unet)
    err = (compiled - eager).norm() / eager.norm()
    assert err < 5e-3, err
    assert torch.equal(again, eager)
