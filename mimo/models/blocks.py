"""Building blocks of the MIMO UNets (docs/MIMO.md §2.2, §3.1, §3.3, §5), named like the checkpoint keys.

Every module here works on *folded* activations: frames folded into the batch, row index
``b * F + f`` (the official ``"b c f h w -> (b f) c h w"``). Convolutions, GroupNorms and spatial
transformers therefore act per frame, exactly like the official "inflated" layers; only the
motion module regroups rows to attend across frames.

Reference attention (docs/MIMO.md §5) is explicit: a :class:`TransformerBlock` knows its module path
(``block_path``, set by the UNet that owns it). In a *write* pass it stores ``norm1(h)`` in a
:class:`ReferenceBank` under that path; in a *read* pass it looks the same path up in the bank
and attends over the concatenation of its own tokens and the bank's tokens.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from . import kernels

#: Temporal positional encoding length of the motion modules (``temporal_position_encoding_max_len``).
PE_MAX_LEN = 32
#: Attention heads of every motion module (``motion_module_kwargs.num_attention_heads``).
MOTION_HEADS = 8


#: Token budget of one chunk (None: no chunking); see :func:`token_chunking`.
_CHUNK: contextvars.ContextVar[int | None] = contextvars.ContextVar("mimo_token_chunk", default=None)


@contextlib.contextmanager
def token_chunking(tokens: int | None):
    """Within the block, split row-independent work so one piece holds about ``tokens`` tokens.

    Applies to every transformer feed-forward (tokens = rows x sequence length; the GEGLU
    projection to 2 x 4C channels is the largest transient of the UNet) and to the reference-reading
    self-attention (tokens = rows x keys, own plus reference). Both act row by row, so chunking
    changes no value; it bounds memory for long and batched windows. Fast mode uses it.
    """
    if tokens is not None and not (isinstance(tokens, int) and tokens > 0):
        raise ValueError(f"tokens: expected a positive int or None, got {tokens!r}")
    reset = _CHUNK.set(tokens)
    try:
        yield
    finally:
        _CHUNK.reset(reset)


def active_chunk_tokens() -> int | None:
    """The token budget set by the innermost :func:`token_chunking` (None: no chunking).

    The UNets read it once per call and hand it to the blocks (``RefContext.chunk``), so block
    forwards stay pure functions of their arguments (what ``torch.compile`` needs).
    """
    return _CHUNK.get()


def _rows_per_chunk(rows: int, tokens_per_row: int, budget: int | None) -> int | None:
    """Rows per chunk under a token budget, or None when everything fits at once."""
    if budget is None or rows * tokens_per_row <= budget:
        return None
    return max(1, budget // tokens_per_row)


def _feed_forward(ff: nn.Module, h: torch.Tensor, budget: int | None) -> torch.Tensor:
    """``ff(h)`` for h (S, N, C), in chunks of whole rows under a token budget."""
    step = _rows_per_chunk(h.shape[0], h.shape[1], budget)
    return ff(h) if step is None else torch.cat([ff(part) for part in h.split(step)])


def attention(attn: Attention, x: torch.Tensor, kv: torch.Tensor | None = None,
              backend: str = "sdpa") -> torch.Tensor:
    """What diffusers' ``Attention`` computes for MIMO's layers, as one function.

    ``to_out(softmax(q kᵀ / sqrt(d)) v)`` per head, q = to_q(x), k = to_k(kv), v = to_v(kv)
    (kv = x for self-attention). MIMO's attentions have no masks, norms or residual inside and a
    rescale factor of 1, so the processor's extra steps (among them a division of the whole
    output by 1.0) are left out; SDPA's default scale is diffusers' ``dim_head ** -0.5``.
    ``backend``: the kernel (:mod:`mimo.models.kernels`; ``sdpa`` is PyTorch's).

    Shapes: x (S, N, C), kv (S, M, C') or None -> (S, N, C).
    """
    kv = x if kv is None else kv
    s, n, m, heads = x.shape[0], x.shape[1], kv.shape[1], attn.heads
    q = attn.to_q(x).view(s, n, heads, -1).transpose(1, 2)
    k = attn.to_k(kv).view(s, m, heads, -1).transpose(1, 2)
    v = attn.to_v(kv).view(s, m, heads, -1).transpose(1, 2)
    if backend == "sdpa":
        out = F.scaled_dot_product_attention(q, k, v)                   # (S, heads, N, d)
    else:
        out = kernels.sdpa(q, k, v, backend)
    return attn.to_out[0](out.transpose(1, 2).reshape(s, n, -1))


@dataclasses.dataclass
class ReferenceBank:
    """Reference tokens written by the reference UNet, keyed by transformer-block module path.

    Shapes:
        tensors[path]  (R, N, C)  ``norm1`` output of the block at ``path`` (N = h_l * w_l tokens
                                  at that level, C its width); R = rows of the reference batch.
    """

    tensors: dict[str, torch.Tensor]

    def to(self, *args, **kwargs) -> ReferenceBank:
        """Cast/move every tensor (the official pipeline casts the bank to fp16)."""
        return ReferenceBank({k: v.to(*args, **kwargs) for k, v in self.tensors.items()})

    def select_rows(self, index: torch.Tensor | list[int]) -> ReferenceBank:
        """A bank whose row ``i`` is this bank's row ``index[i]`` (to lay out batched windows).

        Shapes:
            index  (R',) int  ->  tensors (R', N, C)
        """
        idx = torch.as_tensor(index, dtype=torch.long)
        return ReferenceBank({k: v[idx.to(v.device)] for k, v in self.tensors.items()})

    @property
    def rows(self) -> int:
        return next(iter(self.tensors.values())).shape[0] if self.tensors else 0


@dataclasses.dataclass
class RefContext:
    """How the transformer blocks of one UNet call treat reference attention (internal).

    write: dict to fill (reference UNet write pass) or None.
    read: bank to read (denoising UNet) or None.
    runs: which batch rows read the bank, as runs ``[(start, stop, reads), ...]`` of the (B,)
        mask (None: every row reads); the other rows run plain self-attention.
    frames: F, to expand bank rows (B or 1) to folded rows (B*F).
    chunk: token budget of :func:`token_chunking` (None: no chunking).
    kv_pool: self-attention keys/values of the level of ``kv_pool_hw`` (h, w) tokens average-pooled
        ``kv_pool`` x ``kv_pool`` (1: not pooled; the bank's entries there must be pooled alike,
        :func:`pool_bank`).
    attention: kernel of the spatial self-attentions (:mod:`mimo.models.kernels`).
    """

    write: dict[str, torch.Tensor] | None = None
    read: ReferenceBank | None = None
    runs: list[tuple[int, int, bool]] | None = None
    frames: int = 1
    chunk: int | None = None
    kv_pool: int = 1
    kv_pool_hw: tuple[int, int] | None = None
    attention: str = "sdpa"


@dataclasses.dataclass
class DeepCacheSlot:
    """Feature reuse across steps for one window group (DeepCache): with ``reuse`` the denoising
    UNet runs only its shallowest blocks and takes ``feature`` as the input of its last up block;
    otherwise it runs in full and stores that input here.

    Shapes:
        feature  (B*F, C_1, h, w)  output of the second-to-last up block (C_1 = block_out_channels[1])
    """

    reuse: bool = False
    feature: torch.Tensor | None = None


def pool_tokens(x: torch.Tensor, hw: tuple[int, int], factor: int) -> torch.Tensor:
    """Average-pool a token grid ``factor`` x ``factor`` (a partial last cell averages what it has).

    Shapes: x (S, h*w, C) -> (S, ceil(h/factor) * ceil(w/factor), C)
    """
    s, n, c = x.shape
    h, w = hw
    grid = x.view(s, h, w, c).permute(0, 3, 1, 2)
    pooled = F.avg_pool2d(grid, factor, factor, ceil_mode=True)
    return pooled.flatten(2).transpose(1, 2)


def pool_bank(bank: ReferenceBank, hw: tuple[int, int], factor: int) -> ReferenceBank:
    """The bank with its entries of ``hw`` tokens (the highest resolution) pooled once, as
    :class:`RefContext` ``kv_pool`` expects; other levels unchanged."""
    hw = (int(hw[0]), int(hw[1]))
    return ReferenceBank({k: pool_tokens(v, hw, factor) if v.shape[1] == hw[0] * hw[1] else v
                          for k, v in bank.tensors.items()})


def row_runs(rows: torch.Tensor) -> list[tuple[int, int, bool]]:
    """Runs of equal values in a (B,) bool mask: [(start, stop, value), ...]."""
    values = [bool(v) for v in rows.tolist()]
    runs, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            runs.append((start, i, values[start]))
            start = i
    return runs


def sinusoidal_pe(channels: int, max_len: int = PE_MAX_LEN) -> torch.Tensor:
    """The motion modules' interleaved sinusoid (docs/MIMO.md §3.3), float32.

    ``pe[0, p, 2i] = sin(p * 10000^(-2i/C))``, ``pe[0, p, 2i+1] = cos(...)``.

    Shapes:
        returns (1, max_len, C)
    """
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    div_term = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
    pe = torch.zeros(1, max_len, channels)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


class ResnetBlock(ResnetBlock2D):
    """SD1.5 ResNet block (diffusers ``ResnetBlock2D``, same keys: ``norm1``, ``conv1``,
    ``time_emb_proj``, ``norm2``, ``conv2``, ``conv_shortcut``), with a leaner forward.

    ``x + conv2(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb))))``, shortcut conv when the
    widths differ. When every row has the same timestep (temb has one row) the time projection is
    folded into conv1's bias, and the division by ``output_scale_factor`` (1 in SD1.5) is left
    out: each saves one pass over the activations.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, eps: float, groups: int):
        super().__init__(in_channels=in_channels, out_channels=out_channels, temb_channels=temb_channels,
                         eps=eps, groups=groups, dropout=0.0, non_linearity="silu",
                         output_scale_factor=1.0, pre_norm=True)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Shapes: x (R, C_in, h, w), temb (R or 1, T) -> (R, C_out, h, w).

        Without autograd the SiLUs act in place on the norms' outputs (same values, one activation-
        sized tensor fewer alive: at 784² the widest one is over a GiB per 32-frame CFG window).
        """
        inplace = not torch.is_grad_enabled()
        h = F.silu(self.norm1(x), inplace=inplace)
        t = self.time_emb_proj(F.silu(temb))                                # (R or 1, C_out)
        if t.shape[0] == 1:
            h = self.conv1._conv_forward(h, self.conv1.weight, self.conv1.bias + t[0])
        else:
            h = self.conv1(h) + t[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h), inplace=inplace))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class TransformerBlock(nn.Module):
    """SD1.5 BasicTransformerBlock (attn1 self, attn2 cross, GEGLU FF) with reference attention.

    Keys: ``norm1/2/3``, ``attn1.to_{q,k,v,out.0}``, ``attn2.to_{q,k,v,out.0}``, ``ff.net.0.proj``,
    ``ff.net.2`` (diffusers ``Attention`` and ``FeedForward``).
    """

    def __init__(self, dim: int, heads: int, cross_attention_dim: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim: expected a multiple of heads={heads}, got {dim}")
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False, out_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.attn2 = Attention(query_dim=dim, cross_attention_dim=cross_attention_dim, heads=heads,
                               dim_head=dim // heads, bias=False, out_bias=True)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.block_path = ""  # set by the owning UNet: the module path that pairs writer and reader

    def forward(self, h: torch.Tensor, context: torch.Tensor, ref: RefContext,
                hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Shapes: h (B*F, N, C), context (B*F, 1, D) -> (B*F, N, C); hw: the token grid (h, w)."""
        n = self.norm1(h)
        if ref.write is not None:
            ref.write[self.block_path] = n
        pool = ref.kv_pool if ref.kv_pool > 1 and hw is not None and tuple(hw) == ref.kv_pool_hw else 1
        if ref.read is None:
            a = attention(self.attn1, n, None if pool == 1 else pool_tokens(n, hw, pool), ref.attention)
        else:
            a = self._read_attention(n, ref, hw, pool)
        h = a + h
        h = self._cross_attention(self.norm2(h), context) + h
        return _feed_forward(self.ff, self.norm3(h), ref.chunk) + h

    def _cross_attention(self, n: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """attn2 over the context tokens. MIMO's context is one CLIP token, and a softmax over one
        key is exactly 1, so the output is ``to_out(to_v(context))`` for every query: computed
        once per row instead of projecting and attending all N queries (same values)."""
        if context.shape[1] != 1:
            return attention(self.attn2, n, context)
        out = self.attn2.to_out[0](self.attn2.to_v(context))               # (B*F, 1, C)
        return out.expand_as(n)

    def _read_attention(self, n: torch.Tensor, ref: RefContext, hw, pool: int) -> torch.Tensor:
        """attn1 with K/V = concat(own tokens, reference tokens) on reading rows; plain elsewhere.
        With ``pool`` > 1 the own keys/values are pooled here and the bank's are pooled already."""
        if self.block_path not in ref.read.tensors:
            raise ValueError(f"reference: the bank has no entry for block '{self.block_path}'")
        bank = ref.read.tensors[self.block_path].to(n.dtype)
        rows_total, frames = n.shape[0], ref.frames
        batch = rows_total // frames
        own = n if pool == 1 else pool_tokens(n, hw, pool)                  # keys/values of own tokens
        if bank.shape[0] not in (1, batch) or bank.shape[1:] != own.shape[1:]:
            raise ValueError(f"reference['{self.block_path}']: expected shape ({batch} or 1, "
                             f"{own.shape[1]}, {own.shape[2]}), got {tuple(bank.shape)}")
        runs = [(0, batch, True)] if ref.runs is None else ref.runs
        backend = ref.attention
        outs = []
        for start, stop, reads in runs:  # contiguous runs of rows: slices, no gathers
            part = n[start * frames:stop * frames]
            kv = part if pool == 1 else own[start * frames:stop * frames]
            if not reads:
                outs.append(attention(self.attn1, part, None if pool == 1 else kv, backend))
                continue
            if bank.shape[0] == 1:  # one reference row for every frame: broadcast, no copy
                rb = bank.expand(part.shape[0], -1, -1)
            else:
                rb = bank[start:stop].repeat_interleave(frames, dim=0)       # (rows*F, N, C)
            step = _rows_per_chunk(part.shape[0], kv.shape[1] + rb.shape[1], ref.chunk)
            if step is None:
                outs.append(attention(self.attn1, part, torch.cat([kv, rb], dim=1), backend))
            else:
                outs.append(torch.cat([attention(self.attn1, p, torch.cat([k, r], dim=1), backend)
                                       for p, k, r in zip(part.split(step), kv.split(step), rb.split(step))]))
        return outs[0] if len(outs) == 1 else torch.cat(outs)


class SpatialTransformer(nn.Module):
    """``attentions.k``: GN(eps 1e-6) -> proj_in (1x1 conv) -> one TransformerBlock -> proj_out -> +x."""

    def __init__(self, dim: int, heads: int, cross_attention_dim: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(dim, heads, cross_attention_dim)])
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor, ref: RefContext) -> torch.Tensor:
        """Shapes: x (B*F, C, h, w), context (B*F, 1, D) -> (B*F, C, h, w).

        The 1x1 convolutions ``proj_in``/``proj_out`` are applied as matrix products in token
        layout (the same arithmetic), which spares cuDNN's NCHW<->NHWC transposes around them.
        """
        rows, channels, height, width = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(rows, height * width, channels)
        h = F.linear(h, self.proj_in.weight.view(channels, channels), self.proj_in.bias)
        for block in self.transformer_blocks:
            h = block(h, context, ref, (height, width))
        h = F.linear(h, self.proj_out.weight.view(channels, channels), self.proj_out.bias)
        h = h.view(rows, height, width, channels).permute(0, 3, 1, 2)
        return x + h  # x first: the sum comes out in x's (contiguous NCHW) layout


class PositionalEncoding(nn.Module):
    """``pos_encoder``: holds the persistent ``pe`` buffer (1, 32, C); adds ``pe[:, :F]``."""

    def __init__(self, channels: int, max_len: int = PE_MAX_LEN):
        super().__init__()
        self.register_buffer("pe", sinusoidal_pe(channels, max_len), persistent=True)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Shapes: t (S, F, C) -> (S, F, C)."""
        frames = t.shape[1]
        if frames > self.pe.shape[1]:
            raise ValueError(f"frames: motion modules take at most {self.pe.shape[1]} frames per "
                             f"window, got {frames}")
        return t + self.pe[:, :frames].to(t.dtype)


class TemporalAttention(Attention):
    """``attention_blocks.j``: self-attention across frames, PE added to the q/k/v input only."""

    def __init__(self, dim: int, heads: int = MOTION_HEADS):
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False, out_bias=True)
        self.pos_encoder = PositionalEncoding(dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Shapes: t (S, F, C) -> (S, F, C)."""
        return attention(self, self.pos_encoder(t))


class TemporalTransformerBlock(nn.Module):
    """``transformer_blocks.0``: two temporal self-attentions (``attention_blocks``, ``norms``) + FF."""

    def __init__(self, dim: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim), TemporalAttention(dim)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim, eps=1e-5), nn.LayerNorm(dim, eps=1e-5)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, h: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Shapes: h (S, F, C) frame sequences (S = B * tokens) -> (S, F, C).

        LayerNorms and the FF act per token, so the whole block runs in the frame-sequence
        layout: no transposes between its attentions (they dominated its time when the block
        worked on folded frames).
        """
        for attn, norm in zip(self.attention_blocks, self.norms):
            h = attn(norm(h)) + h
        return _feed_forward(self.ff, self.ff_norm(h), chunk) + h


class TemporalTransformer(nn.Module):
    """``temporal_transformer``: GN(eps 1e-6, per frame) -> proj_in (Linear) -> block -> proj_out -> +x."""

    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(dim)])
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, chunk: int | None = None) -> torch.Tensor:
        """Shapes: x (B*F, C, h, w) folded -> (B*F, C, h, w); one regrouping copy each way."""
        rows, channels, height, width = x.shape
        batch, tokens = rows // frames, height * width
        h = self.norm(x).view(batch, frames, channels, tokens).permute(0, 3, 1, 2)
        h = self.proj_in(h.reshape(batch * tokens, frames, channels))     # (B*h*w, F, C)
        for block in self.transformer_blocks:
            h = block(h, chunk)
        h = self.proj_out(h).view(batch, height, width, frames, channels)
        return x + h.permute(0, 3, 4, 1, 2).reshape(rows, channels, height, width)


class MotionModule(nn.Module):
    """``motion_modules.j``: an AnimateDiff "Vanilla" temporal module (docs/MIMO.md §3.3)."""

    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(dim, groups)

    def forward(self, x: torch.Tensor, frames: int, chunk: int | None = None) -> torch.Tensor:
        """Shapes: x (B*F, C, h, w) folded, frames F -> (B*F, C, h, w); chunk: token budget."""
        if x.shape[0] % frames:
            raise ValueError(f"x: {x.shape[0]} rows is not a multiple of frames={frames}")
        return self.temporal_transformer(x, frames, chunk)
