"""``make_tiny``: a random weights folder in the exact official layout and file formats, small widths.

Used by tests, the demo and benchmarks (``mimo weights make-tiny DIR``). The same function with
``unet_config=SD15_UNET`` and full-size VAE/CLIP configs writes an SD1.5-size random folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import TINY_UNET, UNetConfig
from .loading import LAYOUT
from .unet import DenoisingUNet, PoseGuider, ReferenceUNet

#: A small AutoencoderKL with the SD VAE's 4 levels (factor 8) and 4 latent channels.
TINY_VAE_CONFIG = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.4.2", "act_fn": "silu",
    "block_out_channels": [16, 16, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    "norm_num_groups": 8, "sample_size": 64,
}
#: The sd-vae-ft-mse config (docs/MIMO.md §1).
SD_VAE_CONFIG = {**TINY_VAE_CONFIG, "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
                 "norm_num_groups": 32, "sample_size": 256}
#: A small CLIP vision tower; image_size 224 like ViT-L/14 so the pipeline's preprocessing is unchanged.
TINY_CLIP_CONFIG = {
    "architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model",
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "image_size": 224, "patch_size": 32, "projection_dim": 32, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5, "num_channels": 3,
}
#: ViT-L/14 of sd-image-variations (docs/MIMO.md §1, §6).
SD_CLIP_CONFIG = {**TINY_CLIP_CONFIG, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                  "num_attention_heads": 16, "patch_size": 14, "projection_dim": 768}


def _random_state(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if v.is_floating_point() else v).cpu().contiguous() for k, v in module.state_dict().items()}


def make_tiny(weights_dir: str | Path, seed: int = 0, unet_config: UNetConfig = TINY_UNET,
              vae_config: dict | None = None, clip_config: dict | None = None,
              dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> Path:
    """Write a random weights folder in the official layout (docs/MIMO.md §1) and return its path.

    Files: ``denoising_unet.pth`` (the 2D keys, ``conv_in`` with 8 input channels),
    ``motion_module.pth`` (the motion keys, ``pe`` buffers included), ``reference_unet.pth``,
    ``pose_guider.pth``, ``stable-diffusion-v1-5/unet/{config.json, diffusion_pytorch_model.safetensors}``
    (SD1.5-style 2D UNet: 4 input channels, with ``conv_out``), ``sd-vae-ft-mse/{config.json,
    diffusion_pytorch_model.safetensors}``, ``image_encoder/{config.json, pytorch_model.bin}``.
    Deterministic for a given ``seed`` and device. ``unet_config.cross_attention_dim`` must equal
    the CLIP ``projection_dim``. ``device`` is where the random networks are built (a GPU builds
    the SD1.5-size ones much faster); the files are always written from CPU tensors.

    Shapes: tiny defaults (widths 32, 48, 64, 64; same 1274 keys as SD1.5) give C0 = 32, D = 32; latents are H/8 x W/8 as at full size.
    """
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    vae_config = dict(vae_config or TINY_VAE_CONFIG)
    clip_config = dict(clip_config or TINY_CLIP_CONFIG)
    if clip_config["projection_dim"] != unet_config.cross_attention_dim:
        raise ValueError(f"clip_config: projection_dim expected {unet_config.cross_attention_dim} "
                         f"(the UNet's cross_attention_dim), got {clip_config['projection_dim']}")
    folder = Path(weights_dir)
    folder.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or "cpu")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        torch.manual_seed(seed)
        denoising = _random_state(DenoisingUNet(unet_config), dtype)
        reference = _random_state(ReferenceUNet(unet_config), dtype)
        pose = _random_state(PoseGuider(unet_config.block_out_channels[0]), dtype)
        vae = _random_state(AutoencoderKL.from_config(vae_config), dtype)
        clip_cfg = CLIPVisionConfig(**{k: v for k, v in clip_config.items() if k not in ("architectures", "model_type")})
        clip = _random_state(CLIPVisionModelWithProjection(clip_cfg), dtype)

    write_official_layout(folder, denoising, reference, pose, vae, clip, unet_config, vae_config,
                          clip_config)
    return folder


def write_official_layout(folder: str | Path, denoising: dict, reference: dict, pose: dict,
                          vae: dict, clip: dict, unet_config: UNetConfig, vae_config: dict,
                          clip_config: dict) -> Path:
    """Write state dicts of the five networks as the official weights folder (the files listed in
    :func:`make_tiny`): the denoising UNet split into its spatial keys (``denoising_unet.pth``)
    and motion keys (``motion_module.pth``), and its spatial keys again as the SD1.5 UNet that
    the official loader starts from (``conv_in`` cut to the SD1.5 input channels).
    :func:`mimo.models.load_mimo` loads the result strictly."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cpu = lambda sd: {k: v.detach().cpu().contiguous() for k, v in sd.items()}  # noqa: E731
    denoising, reference, pose, vae, clip = map(cpu, (denoising, reference, pose, vae, clip))
    motion = {k: v for k, v in denoising.items() if ".motion_modules." in k}
    spatial = {k: v for k, v in denoising.items() if ".motion_modules." not in k}
    sd_unet = dict(spatial)
    sd_unet["conv_in.weight"] = spatial["conv_in.weight"][:, : unet_config.in_channels].contiguous()

    torch.save(spatial, folder / LAYOUT["denoising_unet"])
    torch.save(motion, folder / LAYOUT["motion_module"])
    torch.save(reference, folder / LAYOUT["reference_unet"])
    torch.save(pose, folder / LAYOUT["pose_guider"])
    _write_json(folder / LAYOUT["sd_unet_config"], unet_config.to_diffusers_json())
    save_file(sd_unet, str(folder / LAYOUT["sd_unet_weights"][0]))
    _write_json(folder / LAYOUT["vae_config"], vae_config)
    save_file(vae, str(folder / LAYOUT["vae_weights"][0]))
    _write_json(folder / LAYOUT["image_encoder_config"], clip_config)
    torch.save(clip, folder / LAYOUT["image_encoder_weights"][1])
    return folder


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
