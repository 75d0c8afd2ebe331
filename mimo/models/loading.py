"""Strict loading of the official MIMO weights folder (docs/MIMO.md §1.1, §6; docs/MIMO.md §1).

Folder layout (:data:`LAYOUT`)::

    denoising_unet.pth  reference_unet.pth  pose_guider.pth  motion_module.pth
    stable-diffusion-v1-5/unet/config.json + diffusion_pytorch_model.{safetensors,bin}
    sd-vae-ft-mse/config.json + diffusion_pytorch_model.{safetensors,bin}
    image_encoder/config.json + {model.safetensors, pytorch_model.bin}

The denoising UNet is merged in the official order — SD1.5 UNet (``conv_in`` zero-padded from 4
to 8 input channels) -> ``motion_module.pth`` -> ``denoising_unet.pth``, later files overriding
earlier ones — but every key of every file must exist in the network with the right shape, and
every parameter must come from some file. ``pos_encoder.pe`` buffers are verified against the
recomputed sinusoid when a file has them and recomputed when none has. The reference UNet, pose
guider, VAE and image encoder load exactly (legacy VAE attention names accepted). Every problem is
collected, named with key and file, and raised together as :class:`WeightsError`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch
from torch import nn

from .blocks import sinusoidal_pe
from .config import UNetConfig, read_unet_config
from .unet import DenoisingUNet, PoseGuider, ReferenceUNet

log = logging.getLogger(__name__)

#: Hard-coded in the official pipeline (not read from the VAE config), docs/MIMO.md §1.
VAE_SCALING_FACTOR = 0.18215

LAYOUT = {
    "denoising_unet": "denoising_unet.pth",
    "reference_unet": "reference_unet.pth",
    "pose_guider": "pose_guider.pth",
    "motion_module": "motion_module.pth",
    "sd_unet_config": "stable-diffusion-v1-5/unet/config.json",
    "sd_unet_weights": ("stable-diffusion-v1-5/unet/diffusion_pytorch_model.safetensors",
                        "stable-diffusion-v1-5/unet/diffusion_pytorch_model.bin"),
    "vae_config": "sd-vae-ft-mse/config.json",
    "vae_weights": ("sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
                    "sd-vae-ft-mse/diffusion_pytorch_model.bin"),
    "image_encoder_config": "image_encoder/config.json",
    "image_encoder_weights": ("image_encoder/model.safetensors", "image_encoder/pytorch_model.bin"),
}

# Old diffusers spelling of the VAE mid-block attention projections (docs/MIMO.md §6).
_LEGACY_VAE = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
# Keys some files carry that are not parameters of the network: ignored by design.
_IGNORED = {"image_encoder": {"vision_model.embeddings.position_ids"}}
_MAX_LISTED = 25


class WeightsError(ValueError):
    """A weights folder that cannot be loaded strictly; ``report`` lists every problem."""

    def __init__(self, report: WeightsReport):
        self.report = report
        lines = report.problems[:_MAX_LISTED]
        more = len(report.problems) - len(lines)
        msg = f"weights folder {report.folder}: {len(report.problems)} problem(s):\n  " + "\n  ".join(lines)
        if more:
            msg += f"\n  ... and {more} more (run `mimo weights check`)"
        super().__init__(msg)


@dataclasses.dataclass
class NetworkReport:
    """Coverage of one network: which file supplied how many of its tensors."""

    name: str
    expected: int  # tensors in the network's state dict (pe buffers included)
    parameters: int  # parameter values (pe buffers excluded)
    sources: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)  # (file, keys, dtypes)
    covered: int = 0
    pe_verified: int = 0
    pe_recomputed: int = 0


@dataclasses.dataclass
class WeightsReport:
    """Result of :func:`check_weights` (also ``MimoModels.report``)."""

    folder: str
    networks: list[NetworkReport] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """A coverage table, then the problems."""
        rows = [f"weights folder: {self.folder}",
                f"{'network':<16}{'tensors':>9}{'covered':>9}{'params':>15}  sources (keys, dtypes)"]
        for n in self.networks:
            src = "; ".join(f"{f} ({k}, {d})" for f, k, d in n.sources) or "-"
            pe = f"; pe verified {n.pe_verified}, recomputed {n.pe_recomputed}" if n.pe_verified + n.pe_recomputed else ""
            rows.append(f"{n.name:<16}{n.expected:>9}{n.covered:>9}{n.parameters:>15,}  {src}{pe}")
        rows.append("OK" if self.ok else f"{len(self.problems)} problem(s):")
        rows.extend("  " + p for p in self.problems)
        return "\n".join(rows)


@dataclasses.dataclass
class MimoModels:
    """Every network of MIMO, loaded and in eval mode (see :mod:`mimo.models` for shapes)."""

    vae: nn.Module  # diffusers AutoencoderKL
    image_encoder: nn.Module  # transformers CLIPVisionModelWithProjection
    reference_unet: ReferenceUNet
    denoising_unet: DenoisingUNet
    pose_guider: PoseGuider
    unet_config: UNetConfig
    vae_config: dict
    image_encoder_config: dict
    report: WeightsReport
    vae_scaling_factor: float = VAE_SCALING_FACTOR


# ----------------------------------------------------------------------------------------------
# files


def _find(folder: Path, entry: str | tuple[str, ...], report: WeightsReport) -> Path | None:
    names = (entry,) if isinstance(entry, str) else entry
    for name in names:
        if (folder / name).is_file():
            return folder / name
    report.problems.append(f"missing file: {' or '.join(names)}")
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a plain name -> tensor file (.safetensors, or .pth/.bin with ``weights_only=True``)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # legacy (non-zip) torch files cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a weights_only torch file ({_torch_load_reason(e)})") from e
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        keys = list(sd)[:5] if isinstance(sd, dict) else type(sd).__name__
        raise ValueError(f"{path}: expected a flat dict of name -> tensor, got {keys}")
    return sd


def _torch_load_reason(error: BaseException) -> str:
    """torch.load's own words, without its paragraph on weights_only: for a file that is no torch
    file at all the useful part is the unpickler's one line ("Unsupported operand 103")."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        rest = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        return f"not a weights-only PyTorch file: {rest[0].strip() if rest else 'unreadable'}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def convert_legacy_vae_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename old-diffusers VAE attention keys (``query/key/value/proj_attn``) to ``to_q/k/v/out.0``."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if "attentions" in parts and len(parts) >= 2 and parts[-2] in _LEGACY_VAE:
            k = ".".join(parts[:-2] + [_LEGACY_VAE[parts[-2]], parts[-1]])
        out[k] = v
    return out


# ----------------------------------------------------------------------------------------------
# merging and checking


def _rel(path: Path, folder: Path) -> str:
    return str(path.relative_to(folder))


def _merge(name: str, model: nn.Module, sources: list[tuple[str, dict]], report: WeightsReport
           ) -> dict[str, torch.Tensor]:
    """Merge ``sources`` in order into the model's key space, recording every problem."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    pe_keys = {k for k in expected if k.endswith(".pos_encoder.pe")}
    ignored = _IGNORED.get(name, set())
    params = sum(int(torch.Size(s).numel()) for k, s in expected.items() if k not in pe_keys)
    net = NetworkReport(name, len(expected), params)
    merged: dict[str, torch.Tensor] = {}
    for label, sd in sources:
        used, dtypes = 0, set()
        for k, v in sd.items():
            if k in ignored:
                continue
            if k not in expected:
                hint = ""
                if k.startswith("module.") and k[len("module."):] in expected:
                    hint = " (the file's keys carry a 'module.' prefix; save model.state_dict() without DataParallel)"
                report.problems.append(f"unexpected key '{k}' in {label}{hint}")
            elif tuple(v.shape) != expected[k]:
                report.problems.append(f"key '{k}' in {label}: expected shape {list(expected[k])}, "
                                       f"got {list(v.shape)}")
            else:
                merged[k] = v
                used += 1
                dtypes.add(str(v.dtype).replace("torch.", ""))
        net.sources.append((label, used, "/".join(sorted(dtypes)) or "-"))
    labels = ", ".join(label for label, _ in sources)
    for k in expected:
        if k in pe_keys:
            ref = sinusoidal_pe(expected[k][-1], expected[k][1])
            if k in merged:
                got = merged[k].float()
                tol = 2e-3 if merged[k].dtype in (torch.float16, torch.bfloat16) else 1e-5
                if not torch.allclose(got, ref, atol=tol, rtol=0):
                    err = (got - ref).abs().max().item()
                    report.problems.append(f"key '{k}': pos_encoder.pe differs from the sinusoid by {err:.3g}")
                net.pe_verified += 1
            else:
                net.pe_recomputed += 1
            merged[k] = ref
        elif k not in merged and sources:  # with no file at all, the missing file is the problem
            report.problems.append(f"missing key '{k}' ({name}): in none of {labels}")
    net.covered = sum(1 for k in expected if k in merged)
    report.networks.append(net)
    return merged


def _pad_conv_in(sd: dict[str, torch.Tensor], channels: int) -> dict[str, torch.Tensor]:
    """Official step 3 (docs/MIMO.md §1.1): SD1.5 ``conv_in.weight`` [C,4,3,3] gets zero channels up to ``channels``."""
    w = sd.get("conv_in.weight")
    if w is None or w.ndim != 4 or w.shape[1] >= channels:
        return sd
    sd = dict(sd)
    sd["conv_in.weight"] = torch.cat([w, w.new_zeros(w.shape[0], channels - w.shape[1], *w.shape[2:])], dim=1)
    return sd


def _read_json(path: Path | None, report: WeightsReport) -> dict | None:
    if path is None:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        report.problems.append(f"{path.name}: unreadable JSON ({e})")
        return None


def _build_vae(cfg: dict):
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        return AutoencoderKL.from_config(cfg)


def _build_image_encoder(cfg: dict):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if cfg.get("model_type") == "clip" and "vision_config" in cfg:  # a full CLIPConfig
        cfg = {**cfg["vision_config"], "projection_dim": cfg.get("projection_dim", 512)}
    config = CLIPVisionConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        return CLIPVisionModelWithProjection(config)


def _plan(weights_dir: str | Path) -> tuple[WeightsReport, dict]:
    """Read every file, build every network on the meta device and merge; no tensors moved."""
    folder = Path(weights_dir)
    report = WeightsReport(str(folder))
    if not folder.is_dir():
        report.problems.append(f"not a folder: {folder}")
        return report, {}
    paths = {key: _find(folder, entry, report) for key, entry in LAYOUT.items()}
    sds: dict[str, dict] = {}
    for key, p in paths.items():
        if p is not None and not key.endswith("config"):
            try:
                sds[key] = read_state_dict(p)
            except (ValueError, OSError) as e:
                report.problems.append(str(e))
    plan: dict = {}
    if paths["sd_unet_config"] is not None:
        try:
            cfg = read_unet_config(paths["sd_unet_config"])
        except ValueError as e:
            report.problems.append(str(e))
            cfg = None
        if cfg is not None:
            plan["unet_config"] = cfg
            with torch.device("meta"):
                nets = {"denoising_unet": DenoisingUNet(cfg), "reference_unet": ReferenceUNet(cfg),
                        "pose_guider": PoseGuider(cfg.block_out_channels[0])}
            den_sources = []
            for key in ("sd_unet_weights", "motion_module", "denoising_unet"):
                if key in sds:
                    sd = _pad_conv_in(sds[key], nets["denoising_unet"].conv_in.in_channels) \
                        if key == "sd_unet_weights" else sds[key]
                    den_sources.append((_rel(paths[key], folder), sd))
            for name in ("denoising_unet", "reference_unet", "pose_guider"):
                srcs = den_sources if name == "denoising_unet" else \
                    ([(_rel(paths[name], folder), sds[name])] if name in sds else [])
                plan[name] = (nets[name], _merge(name, nets[name], srcs, report))
    for name, cfg_key, w_key, build in (("vae", "vae_config", "vae_weights", _build_vae),
                                        ("image_encoder", "image_encoder_config", "image_encoder_weights",
                                         _build_image_encoder)):
        cfg = _read_json(paths[cfg_key], report)
        if cfg is None:
            continue
        try:
            net = build(cfg)
        except Exception as e:
            report.problems.append(f"{LAYOUT[cfg_key]}: cannot build the network ({e})")
            continue
        plan[cfg_key] = cfg
        sd = sds.get(w_key)
        if sd is not None and name == "vae":
            sd = convert_legacy_vae_state_dict(sd)
        srcs = [(_rel(paths[w_key], folder), sd)] if sd is not None else []
        plan[name] = (net, _merge(name, net, srcs, report))
    return report, plan


def check_weights(weights_dir: str | Path) -> WeightsReport:
    """Check a weights folder without loading anything onto a device.

    Returns the coverage report; ``report.ok`` is False and ``report.problems`` names every
    missing file, missing/unexpected/misshaped key (with its file) and wrong ``pe`` buffer.
    Networks are built on the meta device only; files are memory-mapped where possible.

    Shapes: expected key shapes are those of ``tests/fixtures/keys/*.txt`` at SD1.5 size.
    """
    return _plan(weights_dir)[0]


def _materialise(model: nn.Module, sd: dict[str, torch.Tensor], device, dtype) -> nn.Module:
    cast = {k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in sd.items()}
    model.load_state_dict(cast, strict=True, assign=True)
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:  # non-persistent buffers (CLIP position_ids) are not in any file
            if name.endswith("position_ids"):
                parent = model.get_submodule(name.rsplit(".", 1)[0])
                parent.register_buffer("position_ids", torch.arange(buf.shape[-1], device=device).expand(buf.shape),
                                       persistent=False)
            else:
                raise ValueError(f"{type(model).__name__}: buffer '{name}' has no value after loading")
    return model.eval().requires_grad_(False)


def load_mimo(weights_dir: str | Path, device: str | torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> MimoModels:
    """Load every MIMO network from a folder in the official layout, strictly.

    Args:
        weights_dir: folder as written by ``mimo weights download`` or :func:`make_tiny`.
        device: where the networks go (None: CPU).
        dtype: parameter dtype (files may be fp16 or fp32; values are cast after reading).

    Raises:
        WeightsError (a ValueError) listing every missing file and every missing, unexpected or
        misshaped key with the file it came from.

    Shapes: see :mod:`mimo.models`.
    """
    start = time.perf_counter()
    device = torch.device(device or "cpu")
    report, plan = _plan(weights_dir)
    if not report.ok:
        raise WeightsError(report)
    built = {name: _materialise(plan[name][0], plan[name][1], device, dtype)
             for name in ("vae", "image_encoder", "reference_unet", "denoising_unet", "pose_guider")}
    log.info("%s\nloaded in %.1f s", report.format(), time.perf_counter() - start)
    return MimoModels(unet_config=plan["unet_config"], vae_config=plan["vae_config"],
                      image_encoder_config=plan["image_encoder_config"], report=report, **built)
