"""LoRA fine-tuning through ``peft``: low-rank adapters on the attention projections, merged back
into plain weights whenever a checkpoint is written (so it stays the official layout, and loads
and generates with nothing extra).

Targets (``to_q``, ``to_k``, ``to_v``, ``to_out.0`` of):
    stage ``full``/``image``: the spatial attentions of both UNets (self, cross, reference-reading);
    stage ``motion``: the motion modules' temporal attentions.
"""
from __future__ import annotations

import torch
from torch import nn

_PROJ = r"(to_q|to_k|to_v|to_out\.0)"
TARGETS = {"spatial": rf".*\.(attn1|attn2)\.{_PROJ}", "motion": rf".*\.attention_blocks\.\d+\.{_PROJ}"}


def add_lora(net: nn.Module, stage: str, rank: int, alpha: float | None = None) -> list[nn.Parameter]:
    """Inject rank-``rank`` adapters (B initialised to zero: the network is unchanged until it
    trains) and make them the only trainable parameters. Returns them."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ValueError("lora: needs the peft package (pip install 'mimo-blender[train]')") from None
    if stage not in ("image", "motion", "full"):
        raise ValueError(f"lora: works with the image, motion and full stages, not {stage!r}")
    if not (isinstance(rank, int) and rank >= 1):
        raise ValueError(f"lora: expected a rank >= 1, got {rank!r}")
    target = TARGETS["motion" if stage == "motion" else "spatial"]
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=target, lora_dropout=0.0)
    modules = [net.denoising_unet] if stage == "motion" else [net.denoising_unet, net.reference_unet]
    for module in modules:
        inject_adapter_in_model(config, module)
    net.requires_grad_(False)
    params = []
    for name, p in net.named_parameters():
        if ".lora_" in name:
            p.requires_grad_(True)
            params.append(p)
    return params


@torch.no_grad()
def merged_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every LoRA layer merged into its base weight and the adapter
    keys removed: the keys of the module before :func:`add_lora`."""
    sd = module.state_dict()
    out = {k: v for k, v in sd.items() if ".lora_" not in k and ".base_layer." not in k}
    for name, layer in module.named_modules():
        base = getattr(layer, "base_layer", None)
        if base is None or not hasattr(layer, "get_delta_weight"):
            continue
        weight = base.weight.detach().clone()
        for adapter in getattr(layer, "active_adapters", ["default"]):
            weight += layer.get_delta_weight(adapter).to(weight.dtype)
        out[f"{name}.weight"] = weight
        if base.bias is not None:
            out[f"{name}.bias"] = base.bias.detach().clone()
    return out
