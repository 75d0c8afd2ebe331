"""The two MIMO UNets and the pose guider (docs/MIMO.md §2, §3, §4), attribute names = checkpoint keys.

* :class:`ReferenceUNet`: SD1.5 2D UNet without the output head; :meth:`ReferenceUNet.write`
  runs it once and returns the :class:`~mimo.models.blocks.ReferenceBank`.
* :class:`DenoisingUNet`: SD1.5 inflated to video, 8 input channels, pose features added after
  ``conv_in``, a motion module after every spatial transformer (or ResNet where a block has no
  attention), reference-attention readers; predicts v.
* :class:`PoseGuider`: SDC frames -> 320-channel features at latent size.

Internally activations stay folded ``(B*F, C, h, w)`` (see blocks.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F_
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.upsampling import Upsample2D
from torch import nn

from .blocks import (
    DeepCacheSlot,
    MotionModule,
    RefContext,
    ReferenceBank,
    ResnetBlock,
    SpatialTransformer,
    TransformerBlock,
    active_chunk_tokens,
    row_runs,
)
from .config import DENOISING_IN_CHANNELS, POSE_GUIDER_CHANNELS, UNetConfig


def _resnet(cfg: UNetConfig, cin: int, cout: int) -> ResnetBlock:
    return ResnetBlock(cin, cout, cfg.time_embed_dim, cfg.norm_eps, cfg.norm_num_groups)


def _transformer(cfg: UNetConfig, c: int) -> SpatialTransformer:
    return SpatialTransformer(c, cfg.heads, cfg.cross_attention_dim, cfg.norm_num_groups)


class DownBlock(nn.Module):
    """``down_blocks.i``: resnets[, attentions][, motion_modules][, downsamplers]."""

    def __init__(self, cfg: UNetConfig, cin: int, cout: int, attention: bool, motion: bool, last: bool):
        super().__init__()
        n = cfg.layers_per_block
        self.resnets = nn.ModuleList([_resnet(cfg, cin if j == 0 else cout, cout) for j in range(n)])
        if attention:
            self.attentions = nn.ModuleList([_transformer(cfg, cout) for _ in range(n)])
        if motion:
            self.motion_modules = nn.ModuleList([MotionModule(cout, cfg.norm_num_groups) for _ in range(n)])
        if not last:
            self.downsamplers = nn.ModuleList([Downsample2D(cout, use_conv=True, out_channels=cout,
                                                            padding=cfg.downsample_padding, name="op")])

    def forward(self, h, temb, context, ref: RefContext, downsample: bool = True):
        skips = []
        for j, resnet in enumerate(self.resnets):
            h = resnet(h, temb)
            if hasattr(self, "attentions"):
                h = self.attentions[j](h, context, ref)
            if hasattr(self, "motion_modules"):
                h = self.motion_modules[j](h, ref.frames, ref.chunk)
            skips.append(h)
        if downsample and hasattr(self, "downsamplers"):
            h = self.downsamplers[0](h)
            skips.append(h)
        return h, skips


class MidBlock(nn.Module):
    """``mid_block``: ResNet0 -> transformer -> [motion] -> ResNet1."""

    def __init__(self, cfg: UNetConfig, c: int, motion: bool):
        super().__init__()
        self.resnets = nn.ModuleList([_resnet(cfg, c, c), _resnet(cfg, c, c)])
        self.attentions = nn.ModuleList([_transformer(cfg, c)])
        if motion:
            self.motion_modules = nn.ModuleList([MotionModule(c, cfg.norm_num_groups)])

    def forward(self, h, temb, context, ref: RefContext):
        h = self.resnets[0](h, temb)
        h = self.attentions[0](h, context, ref)
        if hasattr(self, "motion_modules"):
            h = self.motion_modules[0](h, ref.frames, ref.chunk)
        return self.resnets[1](h, temb)


class UpBlock(nn.Module):
    """``up_blocks.i``: (concat skip -> ResNet[ -> transformer][ -> motion]) x (layers+1) [-> upsampler]."""

    def __init__(self, cfg: UNetConfig, i: int, attention: bool, motion: bool):
        super().__init__()
        rev = tuple(reversed(cfg.block_out_channels))
        n, last = cfg.layers_per_block + 1, i == len(rev) - 1
        cout, prev = rev[i], rev[max(i - 1, 0)]
        skip_in = rev[min(i + 1, len(rev) - 1)]
        cins = [(prev if j == 0 else cout) + (skip_in if j == n - 1 else cout) for j in range(n)]
        self.resnets = nn.ModuleList([_resnet(cfg, cins[j], cout) for j in range(n)])
        if attention:
            self.attentions = nn.ModuleList([_transformer(cfg, cout) for _ in range(n)])
        if motion:
            self.motion_modules = nn.ModuleList([MotionModule(cout, cfg.norm_num_groups) for _ in range(n)])
        if not last:
            self.upsamplers = nn.ModuleList([Upsample2D(cout, use_conv=True, out_channels=cout)])

    def forward(self, h, skips: list, temb, context, ref: RefContext, upsample_size):
        for j, resnet in enumerate(self.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), temb)
            if hasattr(self, "attentions"):
                h = self.attentions[j](h, context, ref)
            if hasattr(self, "motion_modules"):
                h = self.motion_modules[j](h, ref.frames, ref.chunk)
        if hasattr(self, "upsamplers"):
            h = self.upsamplers[0](h, output_size=upsample_size)
        return h


class _UNetBase(nn.Module):
    """Shared SD1.5 trunk (docs/MIMO.md §2.2). Subclasses choose input channels, motion modules, head."""

    def __init__(self, cfg: UNetConfig, in_channels: int, motion: bool, head: bool):
        super().__init__()
        self.config = cfg
        c0, chans, nb = cfg.block_out_channels[0], cfg.block_out_channels, len(cfg.block_out_channels)
        self.conv_in = nn.Conv2d(in_channels, c0, 3, padding=1)
        self.time_proj = Timesteps(c0, cfg.flip_sin_to_cos, cfg.freq_shift)
        self.time_embedding = TimestepEmbedding(c0, cfg.time_embed_dim)
        self.down_blocks = nn.ModuleList([
            DownBlock(cfg, chans[max(i - 1, 0)], chans[i], attention=i < nb - 1, motion=motion, last=i == nb - 1)
            for i in range(nb)])
        self.up_blocks = nn.ModuleList([UpBlock(cfg, i, attention=i > 0, motion=motion) for i in range(nb)])
        self.mid_block = MidBlock(cfg, chans[-1], motion)
        if head:
            self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, c0, eps=cfg.norm_eps)
            self.conv_out = nn.Conv2d(c0, cfg.out_channels, 3, padding=1)
        for name, module in self.named_modules():
            if isinstance(module, TransformerBlock):
                module.block_path = name

    @property
    def transformer_block_paths(self) -> list[str]:
        """Module paths of the spatial transformer blocks: the reference-bank keys."""
        return [n for n, m in self.named_modules() if isinstance(m, TransformerBlock)]

    def _time_embedding(self, timestep, batch: int, device, dtype) -> torch.Tensor:
        """(1, T) for one timestep shared by every row (it broadcasts), else (batch, T)."""
        t = torch.as_tensor(timestep, device=device)
        if t.ndim == 0:
            t = t[None]
        if t.ndim != 1 or t.shape[0] not in (1, batch):
            raise ValueError(f"timestep: expected a scalar or shape ({batch},), got {tuple(t.shape)}")
        return self.time_embedding(self.time_proj(t).to(dtype))

    def _trunk(self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, ref: RefContext,
               cache: DeepCacheSlot | None = None):
        """Shapes: h (B*F, C0, h, w) after conv_in; returns (B*F, C0, h, w) after the last up block.

        ``cache`` (feature reuse, :class:`~mimo.models.blocks.DeepCacheSlot`): with ``reuse`` only
        the first down block (without its downsampler) and the last up block run, the latter on
        the cached input; otherwise the whole trunk runs and that input is stored.
        """
        if cache is not None and cache.reuse:
            _, shallow = self.down_blocks[0](h, temb, context, ref, downsample=False)
            return self.up_blocks[-1](cache.feature, [h] + shallow, temb, context, ref, None)
        skips = [h]
        for block in self.down_blocks:
            h, s = block(h, temb, context, ref)
            skips.extend(s)
        h = self.mid_block(h, temb, context, ref)
        # Up-sample to the exact size of the next skip when h, w are not multiples of 2^(n-1) (§2.2).
        factor = 2 ** (len(self.up_blocks) - 1)
        exact = any(s % factor for s in skips[0].shape[-2:])
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            block_skips, skips = skips[-n:], skips[:-n]
            size = tuple(skips[-1].shape[-2:]) if (exact and skips) else None
            if cache is not None and i == len(self.up_blocks) - 1:
                cache.feature = h
            h = block(h, block_skips, temb, context, ref, size)
        return h


def _check(name: str, x: torch.Tensor, shape: tuple) -> None:
    """Raise ValueError unless x matches shape (None = any size)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    ok = x.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


class ReferenceUNet(_UNetBase):
    """SD1.5 2D UNet without ``conv_norm_out``/``conv_out`` (docs/MIMO.md §2): the reference-bank writer."""

    def __init__(self, cfg: UNetConfig):
        super().__init__(cfg, cfg.in_channels, motion=False, head=False)

    def write(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor) -> ReferenceBank:
        """Run the whole UNet once and return ``norm1(h)`` of every spatial transformer block.

        The official pipeline calls it with the reference latent twice, timestep 0 and
        ``encoder_hidden_states = [zeros; clip]``.

        Shapes:
            sample                 (R, 4, h, w)   reference latent (VAE mean x 0.18215)
            timestep               scalar or (R,)
            encoder_hidden_states  (R, 1, D)      D = cross_attention_dim (768)
            returns ReferenceBank  tensors[path] (R, h_l*w_l, C_l) for the 16 block paths
        """
        cfg = self.config
        _check("sample", sample, (None, cfg.in_channels, None, None))
        rows = sample.shape[0]
        _check("encoder_hidden_states", encoder_hidden_states, (rows, None, cfg.cross_attention_dim))
        temb = self._time_embedding(timestep, rows, sample.device, sample.dtype)
        bank: dict[str, torch.Tensor] = {}
        self._trunk(self.conv_in(sample), temb, encoder_hidden_states, RefContext(write=bank, frames=1))
        return ReferenceBank(bank)

    forward = write


class DenoisingUNet(_UNetBase):
    """The 3D "edit_bkfill" UNet (docs/MIMO.md §3): 8 input channels, motion modules, reference readers."""

    def __init__(self, cfg: UNetConfig):
        super().__init__(cfg, DENOISING_IN_CHANNELS, motion=True, head=True)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                pose_cond: torch.Tensor | None = None, reference: ReferenceBank | None = None,
                reference_rows: torch.Tensor | list[bool] | None = None, kv_pool: int = 1,
                attention_backend: str = "sdpa", deep_cache: DeepCacheSlot | None = None) -> torch.Tensor:
        """Predict v for one window.

        Args:
            sample: ``cat([noisy latent, scene latent], dim=1)``.
            timestep: int / 0-d tensor, or one per batch row.
            encoder_hidden_states: CLIP image embedding per row (zeros for the unconditional rows).
            pose_cond: pose-guider features, added after ``conv_in`` (None: no pose).
            reference: bank from :meth:`ReferenceUNet.write`, with R = B or R = 1 rows.
            reference_rows: which batch rows read the reference (None: all rows when a bank is
                given); the other rows run plain self-attention, like the official unconditional
                half. For the official CFG layout [uncond; cond] pass ``[False, True]``.
            kv_pool: pool the spatial self-attentions' keys/values at the input's own resolution
                ``kv_pool`` x ``kv_pool`` (the bank's entries there must be pooled alike:
                :func:`~mimo.models.blocks.pool_bank`). 1: exact attention.
            attention_backend: kernel of the spatial self-attentions (:mod:`mimo.models.kernels`).
            deep_cache: feature reuse across steps (see ``_trunk``); None: off.

        Shapes:
            sample                 (B, 8, F, h, w)    F <= 32
            encoder_hidden_states  (B, 1, D)
            pose_cond              (B, C0, F, h, w)   C0 = block_out_channels[0] (320)
            reference_rows         (B,) bool
            returns                (B, 4, F, h, w)    v prediction
        """
        cfg = self.config
        _check("sample", sample, (None, DENOISING_IN_CHANNELS, None, None, None))
        batch, _, frames, height, width = sample.shape
        _check("encoder_hidden_states", encoder_hidden_states, (batch, None, cfg.cross_attention_dim))
        c0 = cfg.block_out_channels[0]
        if pose_cond is not None:
            _check("pose_cond", pose_cond, (batch, c0, frames, height, width))
        runs = None
        if reference_rows is not None:
            if reference is None:
                raise ValueError("reference_rows: given without a reference bank")
            rows = torch.as_tensor(reference_rows, dtype=torch.bool)
            _check("reference_rows", rows, (batch,))
            runs = row_runs(rows)
        ref = RefContext(read=reference, runs=runs, frames=frames, chunk=active_chunk_tokens(),
                         kv_pool=kv_pool, kv_pool_hw=(height, width), attention=attention_backend)

        temb = self._time_embedding(timestep, batch, sample.device, sample.dtype)  # (1 or B, 4*C0)
        if temb.shape[0] > 1:
            temb = temb.repeat_interleave(frames, dim=0)  # (B*F, 4*C0): broadcast over frames
        context = encoder_hidden_states.repeat_interleave(frames, dim=0)  # (B*F, 1, D)
        x = sample.transpose(1, 2).reshape(batch * frames, DENOISING_IN_CHANNELS, height, width)
        h = self.conv_in(x)
        if pose_cond is not None:
            h = h + pose_cond.transpose(1, 2).reshape(batch * frames, c0, height, width)
        h = self._trunk(h, temb, context, ref, deep_cache)
        h = self.conv_out(F_.silu(self.conv_norm_out(h)))
        return h.reshape(batch, frames, cfg.out_channels, height, width).transpose(1, 2)


class PoseGuider(nn.Module):
    """Structured-motion-code encoder (docs/MIMO.md §4), applied per frame."""

    def __init__(self, embedding_channels: int = 320, channels: tuple[int, ...] = POSE_GUIDER_CHANNELS,
                 in_channels: int = 3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        blocks = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            blocks.append(nn.Conv2d(cin, cin, 3, padding=1))
            blocks.append(nn.Conv2d(cin, cout, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], embedding_channels, 3, padding=1)
        self.embedding_channels = embedding_channels

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Encode motion-code frames in [0, 1] (not normalised).

        Shapes:
            codes    (B, 3, F, H, W)
            returns  (B, C0, F, h, w)   h = ceil(H/8) (H/8 for multiples of 8), C0 = 320
        """
        _check("codes", codes, (None, self.conv_in.in_channels, None, None, None))
        batch, channels, frames, height, width = codes.shape
        x = codes.transpose(1, 2).reshape(batch * frames, channels, height, width)
        x = F_.silu(self.conv_in(x))
        for block in self.blocks:
            x = F_.silu(block(x))
        x = self.conv_out(x)
        return x.reshape(batch, frames, *x.shape[1:]).transpose(1, 2)
