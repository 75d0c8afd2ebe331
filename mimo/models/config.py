"""Network sizes: read from the SD1.5 ``unet/config.json`` of a weights folder (docs/MIMO.md §1).

Only the SD1.5 family is supported: ``CrossAttnDownBlock2D`` x (n-1) + ``DownBlock2D``,
``UpBlock2D`` + ``CrossAttnUpBlock2D`` x (n-1), one transformer layer per block, conv projections.
Anything else in the config is an error naming the field, not a silently different network.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

#: PoseGuider(block_out_channels=(16, 32, 96, 256)) as built by the official scripts (docs/MIMO.md §4).
POSE_GUIDER_CHANNELS = (16, 32, 96, 256)
#: Input channels of the denoising UNet: noisy latent (4) + scene latent (4), docs/MIMO.md §3.2.
DENOISING_IN_CHANNELS = 8


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """The fields of a diffusers ``UNet2DConditionModel`` config that MIMO's UNets use."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_head_dim: int = 8  # SD1.5 uses it as the number of heads
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1

    @property
    def heads(self) -> int:
        return self.attention_head_dim

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4

    def to_diffusers_json(self) -> dict:
        """A config.json in the diffusers ``UNet2DConditionModel`` format (for make_tiny)."""
        n = len(self.block_out_channels)
        return {
            "_class_name": "UNet2DConditionModel",
            "_diffusers_version": "0.6.0",
            "act_fn": "silu",
            "attention_head_dim": self.attention_head_dim,
            "block_out_channels": list(self.block_out_channels),
            "center_input_sample": False,
            "cross_attention_dim": self.cross_attention_dim,
            "down_block_types": ["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
            "downsample_padding": self.downsample_padding,
            "flip_sin_to_cos": self.flip_sin_to_cos,
            "freq_shift": self.freq_shift,
            "in_channels": self.in_channels,
            "layers_per_block": self.layers_per_block,
            "mid_block_scale_factor": 1,
            "norm_eps": self.norm_eps,
            "norm_num_groups": self.norm_num_groups,
            "out_channels": self.out_channels,
            "sample_size": 64,
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
        }


SD15_UNET = UNetConfig()
#: Same module tree as SD1.5, small widths: every path runs on CPU in seconds.
TINY_UNET = UNetConfig(block_out_channels=(32, 48, 64, 64), cross_attention_dim=32, norm_num_groups=8)

# Config fields that must hold these values (or be absent) for the SD1.5 family we implement.
_REQUIRED = {
    "act_fn": ("silu",),
    "center_input_sample": (False,),
    "use_linear_projection": (False,),
    "only_cross_attention": (False,),
    "upcast_attention": (False,),
    "dual_cross_attention": (False,),
    "class_embed_type": (None,),
    "addition_embed_type": (None,),
    "num_class_embeds": (None,),
    "mid_block_type": ("UNetMidBlock2DCrossAttn",),
    "mid_block_scale_factor": (1, 1.0),
    "resnet_time_scale_shift": ("default",),
    "transformer_layers_per_block": (1,),
    "time_embedding_type": ("positional",),
    "conv_in_kernel": (3,),
    "conv_out_kernel": (3,),
    "encoder_hid_dim": (None,),
    "num_attention_heads": (None,),
}


def unet_config_from_dict(cfg: dict, source: str = "config") -> UNetConfig:
    """Validate a diffusers UNet2DConditionModel config dict and keep the fields we use.

    Raises ValueError naming the field, its value and what is supported.
    """
    for key, allowed in _REQUIRED.items():
        if key in cfg and cfg[key] not in allowed:
            raise ValueError(f"{source}: {key} expected {allowed[0]!r}, got {cfg[key]!r}")
    try:
        blocks = tuple(int(c) for c in cfg["block_out_channels"])
        n = len(blocks)
        down = tuple(cfg["down_block_types"])
        up = tuple(cfg["up_block_types"])
    except KeyError as e:
        raise ValueError(f"{source}: missing field {e.args[0]!r}") from None
    if n < 2:
        raise ValueError(f"{source}: block_out_channels expected at least 2 entries, got {list(blocks)}")
    want_down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    want_up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    if down != want_down:
        raise ValueError(f"{source}: down_block_types expected {list(want_down)}, got {list(down)}")
    if up != want_up:
        raise ValueError(f"{source}: up_block_types expected {list(want_up)}, got {list(up)}")
    heads = cfg.get("attention_head_dim", 8)
    if not isinstance(heads, int):
        raise ValueError(f"{source}: attention_head_dim expected one integer, got {heads!r}")
    out = UNetConfig(
        in_channels=int(cfg.get("in_channels", 4)),
        out_channels=int(cfg.get("out_channels", 4)),
        block_out_channels=blocks,
        layers_per_block=int(cfg.get("layers_per_block", 2)),
        attention_head_dim=heads,
        cross_attention_dim=int(cfg.get("cross_attention_dim", 768)),
        norm_num_groups=int(cfg.get("norm_num_groups", 32)),
        norm_eps=float(cfg.get("norm_eps", 1e-5)),
        flip_sin_to_cos=bool(cfg.get("flip_sin_to_cos", True)),
        freq_shift=int(cfg.get("freq_shift", 0)),
        downsample_padding=int(cfg.get("downsample_padding", 1)),
    )
    for c in blocks:
        if c % out.norm_num_groups or c % heads:
            raise ValueError(f"{source}: block width {c} must be divisible by norm_num_groups="
                             f"{out.norm_num_groups} and attention_head_dim={heads}")
    return out


def read_unet_config(path: str | Path) -> UNetConfig:
    """Read ``stable-diffusion-v1-5/unet/config.json`` (or any SD1.5-family UNet config)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"unet config: expected the file {path}, which does not exist")
    with open(path) as f:
        return unet_config_from_dict(json.load(f), source=str(path))
