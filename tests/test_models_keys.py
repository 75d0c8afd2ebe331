"""Key-and-shape parity at full SD1.5 size (meta device) against fixtures written from the official
key naming rules (tests/fixtures/keys/spec_keys.py), and parameter counts against docs/MIMO.md §10.1."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mimo.models import SD15_UNET, TINY_UNET, DenoisingUNet, PoseGuider, ReferenceUNet
from mimo.models.loading import _build_image_encoder, _build_vae
from mimo.models.tiny import SD_CLIP_CONFIG, SD_VAE_CONFIG

KEYS = Path(__file__).parent / "fixtures" / "keys"


def read_fixture(name: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in (KEYS / name).read_text().splitlines():
        key, shape = line.split("\t")
        out[key] = tuple(int(s) for s in shape.split(","))
    return out


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def sd15():
    with torch.device("meta"):
        return {"reference_unet": ReferenceUNet(SD15_UNET), "denoising_unet": DenoisingUNet(SD15_UNET),
                "pose_guider": PoseGuider(320)}


@pytest.mark.parametrize("name,count", [("reference_unet", 682), ("denoising_unet", 1274), ("pose_guider", 16)])
def test_keys_and_shapes_match_spec_tables(sd15, name, count):
    want = read_fixture(f"{name}.txt")
    got = shapes(sd15[name])
    assert len(want) == count
    assert sorted(set(want) - set(got)) == [] and sorted(set(got) - set(want)) == []
    bad = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert bad == {}


def test_fixture_generator_reproduces_committed_files():
    import importlib.util

    spec = importlib.util.spec_from_file_location("spec_keys", KEYS / "spec_keys.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, make in mod.FIXTURES.items():
        assert {k: tuple(s) for k, s in make()} == read_fixture(name), name


def _count(module, pe: bool = False) -> int:
    return sum(v.numel() for k, v in module.state_dict().items() if k.endswith(".pe") == pe)


def test_parameter_counts_equal_spec_10_1(sd15):
    assert _count(sd15["denoising_unet"]) == 1_312_741_764
    assert _count(sd15["denoising_unet"], pe=True) == 1_208_320
    motion = sum(v.numel() for k, v in sd15["denoising_unet"].state_dict().items()
                 if ".motion_modules." in k and not k.endswith(".pe"))
    assert motion == 453_209_280
    assert _count(sd15["reference_unet"]) == 859_508_800
    assert _count(sd15["pose_guider"]) == 1_086_480
    vae = _build_vae(SD_VAE_CONFIG)
    assert _count(vae) == 83_653_863
    assert sum(v.numel() for k, v in vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))) == 34_163_664
    clip = _build_image_encoder(SD_CLIP_CONFIG)
    assert _count(clip) == 303_966_208
    total = sum(_count(m) for m in (*sd15.values(), vae, clip))
    assert total == 2_560_957_115


def test_module_structure_counts(sd15):
    den = sd15["denoising_unet"]
    motion = {n.split(".temporal_transformer")[0] for n, _ in den.named_modules() if n.endswith("temporal_transformer")}
    assert len(motion) == 21
    assert len(den.transformer_block_paths) == 16
    assert den.transformer_block_paths == sd15["reference_unet"].transformer_block_paths


def test_tiny_config_has_the_sd15_key_set():
    with torch.device("meta"):
        tiny, full = DenoisingUNet(TINY_UNET), DenoisingUNet(SD15_UNET)
    assert set(tiny.state_dict()) == set(full.state_dict())
