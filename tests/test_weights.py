"""Weights folders: tiny round trips through load_mimo, merge order, corrupted folders, the
``mimo weights`` command and the download planner (offline)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mimo.cli import main
from mimo.models import LAYOUT, WeightsError, check_weights, load_mimo, make_tiny
from mimo.models.download import SOURCES, PlannedFile, needs_download, plan_downloads


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("weights") / "tiny", seed=3)


@pytest.fixture
def copy(tiny_dir, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_dir, tmp_path / "w"))


def _load(path):
    return torch.load(path, weights_only=True)


def test_round_trip_values_come_from_the_files(tiny_dir):
    m = load_mimo(tiny_dir)
    den = m.denoising_unet.state_dict()
    for k, v in _load(tiny_dir / "denoising_unet.pth").items():
        assert torch.equal(den[k], v), k
    for k, v in _load(tiny_dir / "motion_module.pth").items():
        assert torch.equal(den[k], v), k
    for name in ("reference_unet", "pose_guider"):
        sd = getattr(m, name).state_dict()
        want = _load(tiny_dir / LAYOUT[name])
        assert sd.keys() == want.keys() and all(torch.equal(sd[k], want[k]) for k in want)
    vae = load_file(str(tiny_dir / LAYOUT["vae_weights"][0]))
    assert all(torch.equal(m.vae.state_dict()[k], v) for k, v in vae.items())
    assert m.report.ok and not m.denoising_unet.training
    assert all(not p.requires_grad for p in m.denoising_unet.parameters())
    assert m.image_encoder(torch.zeros(1, 3, 224, 224)).image_embeds.shape == (1, 32)


def test_same_seed_same_folder(tiny_dir, tmp_path):
    other = make_tiny(tmp_path / "again", seed=3)
    a, b = _load(tiny_dir / "pose_guider.pth"), _load(other / "pose_guider.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_merge_order_and_conv_in_zero_padding(copy):
    sd15_path = copy / LAYOUT["sd_unet_weights"][0]
    sd15 = load_file(str(sd15_path))
    sd15["conv_out.bias"] = torch.full_like(sd15["conv_out.bias"], 7.0)
    save_file(sd15, str(sd15_path))
    den = _load(copy / "denoising_unet.pth")
    del den["conv_in.weight"], den["mid_block.resnets.0.conv1.bias"]
    torch.save(den, copy / "denoising_unet.pth")
    state = load_mimo(copy).denoising_unet.state_dict()
    assert not torch.equal(state["conv_out.bias"], sd15["conv_out.bias"])  # denoising_unet.pth wins
    assert torch.equal(state["mid_block.resnets.0.conv1.bias"], sd15["mid_block.resnets.0.conv1.bias"])
    assert torch.equal(state["conv_in.weight"][:, :4], sd15["conv_in.weight"])  # from SD1.5 ...
    assert not state["conv_in.weight"][:, 4:].any()  # ... with 4 zero scene channels


def test_fp16_files_and_dtype_cast(tmp_path):
    folder = make_tiny(tmp_path / "h", dtype=torch.float16)
    m = load_mimo(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in m.denoising_unet.parameters()} == {torch.bfloat16}
    assert m.report.networks[0].pe_verified == 42
    assert "float16" in m.report.format()


def test_pe_recomputed_when_absent_and_rejected_when_wrong(copy):
    mm = _load(copy / "motion_module.pth")
    pe_key = next(k for k in mm if k.endswith("pos_encoder.pe"))
    no_pe = {k: v for k, v in mm.items() if not k.endswith(".pe")}
    torch.save(no_pe, copy / "motion_module.pth")
    m = load_mimo(copy)
    assert m.report.networks[0].pe_recomputed == 42
    assert torch.equal(m.denoising_unet.state_dict()[pe_key], mm[pe_key])
    mm[pe_key] = mm[pe_key] * 0.5
    torch.save(mm, copy / "motion_module.pth")
    with pytest.raises(WeightsError, match=f"key '{pe_key}': pos_encoder.pe differs"):
        load_mimo(copy)


def test_missing_file(copy):
    (copy / "pose_guider.pth").unlink()
    with pytest.raises(WeightsError, match="missing file: pose_guider.pth"):
        load_mimo(copy)


def test_renamed_key_names_key_and_file(copy):
    sd = _load(copy / "reference_unet.pth")
    sd["conv_inn.weight"] = sd.pop("conv_in.weight")
    torch.save(sd, copy / "reference_unet.pth")
    with pytest.raises(WeightsError) as e:
        load_mimo(copy)
    assert "unexpected key 'conv_inn.weight' in reference_unet.pth" in str(e.value)
    assert "missing key 'conv_in.weight' (reference_unet): in none of reference_unet.pth" in str(e.value)


def test_wrong_shape(copy):
    sd = _load(copy / "pose_guider.pth")
    sd["conv_out.bias"] = torch.zeros(7)
    torch.save(sd, copy / "pose_guider.pth")
    with pytest.raises(WeightsError, match=r"key 'conv_out.bias' in pose_guider.pth: expected shape \[32\], got \[7\]"):
        load_mimo(copy)


def test_module_prefix_is_not_silently_ignored(copy):
    sd = _load(copy / "denoising_unet.pth")
    torch.save({"module." + k: v for k, v in sd.items()}, copy / "denoising_unet.pth")
    report = check_weights(copy)
    assert not report.ok
    assert "unexpected key 'module.conv_in.weight' in denoising_unet.pth (the file's keys carry a 'module.' prefix" \
        in "\n".join(report.problems)


def test_missing_motion_key_named(copy):
    mm = _load(copy / "motion_module.pth")
    key = "up_blocks.3.motion_modules.2.temporal_transformer.proj_out.weight"
    del mm[key]
    torch.save(mm, copy / "motion_module.pth")
    with pytest.raises(WeightsError, match=f"missing key '{key}' .denoising_unet.: in none of "):
        load_mimo(copy)


def test_legacy_vae_attention_names_accepted(copy):
    path = copy / LAYOUT["vae_weights"][0]
    sd = load_file(str(path))
    legacy = {}
    for k, v in sd.items():
        for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            k = k.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
        legacy[k] = v
    assert any(".query." in k for k in legacy)
    path.unlink()
    torch.save(legacy, copy / "sd-vae-ft-mse/diffusion_pytorch_model.bin")
    vae = load_mimo(copy).vae.state_dict()
    assert torch.equal(vae["decoder.mid_block.attentions.0.to_out.0.weight"],
                       sd["decoder.mid_block.attentions.0.to_out.0.weight"])


def test_clip_position_ids_in_file_are_ignored(copy):
    path = copy / LAYOUT["image_encoder_weights"][1]
    sd = _load(path)
    sd["vision_model.embeddings.position_ids"] = torch.arange(50)[None]
    torch.save(sd, path)
    m = load_mimo(copy)
    assert torch.equal(m.image_encoder.vision_model.embeddings.position_ids, torch.arange(50)[None])


def test_not_a_plain_tensor_dict(copy):
    torch.save({"state_dict": {"a": torch.zeros(1)}}, copy / "pose_guider.pth")
    with pytest.raises(WeightsError, match="pose_guider.pth: .*expected a flat dict of name -> tensor"):
        load_mimo(copy)


def test_unsupported_unet_config(copy):
    import json

    path = copy / LAYOUT["sd_unet_config"]
    cfg = json.loads(path.read_text())
    cfg["use_linear_projection"] = True
    path.write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="use_linear_projection expected False, got True"):
        load_mimo(copy)


def test_cli_check_and_make_tiny(tmp_path, capsys):
    assert main(["weights", "make-tiny", str(tmp_path / "t")]) == 0
    assert main(["weights", "check", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "denoising_unet" in out and "OK" in out
    (tmp_path / "t" / "motion_module.pth").unlink()
    assert main(["weights", "check", str(tmp_path / "t")]) == 1
    assert "missing file: motion_module.pth" in capsys.readouterr().out


def _listings(mimo_files):
    return {
        "org/mimo": {f: 10 for f in mimo_files},
        "stable-diffusion-v1-5/stable-diffusion-v1-5": {
            "unet/config.json": 1, "unet/diffusion_pytorch_model.safetensors": 2,
            "unet/diffusion_pytorch_model.fp16.safetensors": 3, "vae/config.json": 4},
        "stabilityai/sd-vae-ft-mse": {"config.json": 5, "diffusion_pytorch_model.safetensors": 6,
                                      "diffusion_pytorch_model.bin": 7},
        "lambdalabs/sd-image-variations-diffusers": {"image_encoder/config.json": 8,
                                                     "image_encoder/pytorch_model.bin": 9},
    }


def test_download_plan_places_files_in_the_official_layout():
    mimo = ["README.md", "pretrained_weights/denoising_unet.pth", "pretrained_weights/reference_unet.pth",
            "pose_guider.pth", "pretrained_weights/pose_guider.pth", "x/y/motion_module.pth"]
    plan = {p.dest: (p.repo, p.remote, p.size) for p in plan_downloads(_listings(mimo), "org/mimo")}
    assert plan["denoising_unet.pth"] == ("org/mimo", "pretrained_weights/denoising_unet.pth", 10)
    assert plan["pose_guider.pth"][1] == "pose_guider.pth"  # shortest path wins
    assert plan["motion_module.pth"][1] == "x/y/motion_module.pth"
    assert plan["stable-diffusion-v1-5/unet/diffusion_pytorch_model.safetensors"][1:] == \
        ("unet/diffusion_pytorch_model.safetensors", 2)
    assert plan["sd-vae-ft-mse/diffusion_pytorch_model.safetensors"][1] == "diffusion_pytorch_model.safetensors"
    assert plan["image_encoder/pytorch_model.bin"][1] == "image_encoder/pytorch_model.bin"
    assert set(plan) == {s.dest for s in SOURCES}
    # every destination is a path the loader looks for
    wanted = set()
    for entry in LAYOUT.values():
        wanted |= {entry} if isinstance(entry, str) else set(entry)
    assert set(plan) <= wanted


def test_download_plan_reports_what_is_missing():
    with pytest.raises(ValueError, match="reference_unet.pth: none of \\['reference_unet.pth'\\] in repo 'org/mimo'"):
        plan_downloads(_listings(["denoising_unet.pth", "pose_guider.pth", "motion_module.pth"]), "org/mimo")


def test_needs_download_skips_complete_files(tmp_path):
    item = PlannedFile("r", "a.pth", "sub/a.pth", 4)
    assert needs_download(tmp_path, item)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/a.pth").write_bytes(b"12")
    assert needs_download(tmp_path, item)  # partial
    (tmp_path / "sub/a.pth").write_bytes(b"1234")
    assert not needs_download(tmp_path, item)


def test_legacy_non_zip_torch_file_is_read(copy):
    sd = _load(copy / "pose_guider.pth")
    torch.save(sd, copy / "pose_guider.pth", _use_new_zipfile_serialization=False)
    state = load_mimo(copy).pose_guider.state_dict()
    assert all(torch.equal(state[k], sd[k]) for k in sd)
