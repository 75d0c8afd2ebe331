"""mimo.models: the MIMO networks and strict loading of the official weights (docs/MIMO.md §1–§6).

Public API (what the pipeline codes against)::

    models = load_mimo("weights/", device="cuda", dtype=torch.float16)   # -> MimoModels
    bank = models.reference_unet.write(ref_latent2, 0, clip2)            # -> ReferenceBank
    pose = models.pose_guider(codes)                                     # (B,3,F,H,W) -> (B,320,F,h,w)
    v = models.denoising_unet(sample, t, clip2, pose_cond=pose_w,        # (B,8,F,h,w) -> (B,4,F,h,w)
                              reference=bank, reference_rows=[False, True])

Shapes (glossary in :mod:`mimo`):
    reference_unet.write(sample (R,4,h,w), timestep, encoder_hidden_states (R,1,D))
        -> ReferenceBank: tensors[block_path] (R, h_l*w_l, C_l), 16 paths at SD1.5 size, the
           same module paths in both UNets (``DenoisingUNet.transformer_block_paths``).
    denoising_unet(sample (B,8,F,h,w) = cat(noisy latent, scene latent), timestep scalar or (B,),
                   encoder_hidden_states (B,1,D), pose_cond (B,C0,F,h,w) | None,
                   reference ReferenceBank (R = B or 1 rows) | None, reference_rows (B,) bool | None)
        -> v prediction (B,4,F,h,w). F <= 32. Rows with ``reference_rows`` False (the
           unconditional CFG rows) run plain self-attention, without the reference (docs/MIMO.md §5).
    pose_guider(codes (B,3,F,H,W) in [0,1]) -> (B,C0,F,h,w).
    vae: diffusers AutoencoderKL; image_encoder: transformers CLIPVisionModelWithProjection
        (``image_embeds`` (B, D)); D = cross_attention_dim (768), C0 = block_out_channels[0] (320).

The official pipeline casts the bank to fp16 (``bank.to(torch.float16)``) and runs the reference
UNet with batch 2 ([zeros; clip]) at timestep 0; those are pipeline decisions, not done here.
"""
from __future__ import annotations

from .blocks import PE_MAX_LEN, ReferenceBank, sinusoidal_pe
from .config import SD15_UNET, TINY_UNET, UNetConfig, read_unet_config
from .loading import (
    LAYOUT,
    VAE_SCALING_FACTOR,
    MimoModels,
    WeightsError,
    WeightsReport,
    check_weights,
    load_mimo,
)
from .tiny import make_tiny
from .unet import DenoisingUNet, PoseGuider, ReferenceUNet

__all__ = [
    "LAYOUT", "PE_MAX_LEN", "SD15_UNET", "TINY_UNET", "VAE_SCALING_FACTOR",
    "DenoisingUNet", "MimoModels", "PoseGuider", "ReferenceBank", "ReferenceUNet", "UNetConfig",
    "WeightsError", "WeightsReport",
    "check_weights", "load_mimo", "make_tiny", "read_unet_config", "sinusoidal_pe",
]
