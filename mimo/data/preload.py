"""``PreloadedData``: the items of :class:`mimo.data.MimoDataset`, a whole batch at once on the GPU.

``MimoDataset`` prepares each item in Python (crop, pad square, PIL Lanczos resize, per frame),
which starves a GPU training a tiny model. This path reads every clip into device memory once
(uint8) and prepares a batch with a few batched matrix products, reproducing the general path:

* the same random choices (:meth:`MimoDataset.draw`: clip, window, reference for item ``i``);
* the same boxes (per-frame body boxes of :func:`mimo.pipeline.roi.frame_box`, found once at
  load time; a window's box is their union, the whole frame when no frame shows a body);
* the same resampling, bit for bit: PIL's separable convolution (horizontal pass, then
  vertical), with its filter windows, its coefficients quantised to 22 fractional bits and its
  rounding and clipping to 8 bits after each pass, evaluated exactly in float64 (every sum is an
  integer below 2**53). The padding of ``pad_square`` is folded into the matrices: a tap that
  falls in the padding reads the fill value. The reference goes through the same Lanczos resize,
  and the CLIP input through PIL's bicubic filter (the ``clip_pixels`` of the general path).

:func:`resample_matrix` is the coefficient table of one 1-D resize, as PIL builds it. The
general path stays the reference (and the only path for clips of different sizes or data that
does not fit in device memory); tests compare the two item by item.

Shapes of :meth:`PreloadedData.batch` (B items): as a collated ``MimoDataset`` batch, on ``device``::

    frames, scene (B, 3, N, S, S) in [-1, 1]; codes (B, 3, N, S, S) in [0, 1];
    occlusion (B, N, S, S) in [0, 1]; reference (B, 3, S, S) in [-1, 1]; clip (B, 3, 224, 224)
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch

from mimo.pipeline.roi import frame_box, human_mask

from .dataset import MimoDataset
from .layout import ClipError

PRECISION_BITS = 22  # PIL's 8-bit resampling: 32 - 8 - 2 fractional bits per coefficient
SUPPORT = {"lanczos": 3.0, "bicubic": 2.0}


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _filter(name: str, x: float) -> float:
    if name == "lanczos":
        return _sinc(x) * _sinc(x / 3.0) if -3.0 <= x < 3.0 else 0.0
    a, x = -0.5, abs(x)  # bicubic, PIL's a = -0.5
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=256)
def resample_matrix(in_size: int, out_size: int, kind: str = "lanczos") -> np.ndarray:
    """PIL's coefficients for resizing ``in_size`` pixels to ``out_size`` along one axis, each
    normalised and quantised to integers of 22 fractional bits, as its 8-bit resampler uses them.

    Shapes: -> (out_size, in_size) float64 holding integers
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = SUPPORT[kind] * filterscale
    out = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        w = np.array([_filter(kind, (x + xmin - center + 0.5) / filterscale) for x in range(xmax - xmin)])
        total = w.sum()
        if total != 0.0:
            w = w / total
        q = np.where(w < 0, np.trunc(w * (1 << PRECISION_BITS) - 0.5), np.trunc(w * (1 << PRECISION_BITS) + 0.5))
        out[xx, xmin:xmax] = q
    return out


def _shift_clip(acc: torch.Tensor) -> torch.Tensor:
    """PIL's rounding of an accumulated sum: add half, shift right 22 bits (floor), clip to 8 bits."""
    return torch.floor((acc + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)).clamp_(0, 255)


class _Tables:
    """Coefficient tables of every square side L -> S, stacked (and padded) on the device."""

    def __init__(self, sides: list[int], size: int, kind: str, device):
        self.index = {L: i for i, L in enumerate(sides)}
        Lmax = max(sides)
        t = np.zeros((len(sides), size, Lmax))
        for i, L in enumerate(sides):
            t[i, :, :L] = resample_matrix(L, size, kind)
        self.table = torch.from_numpy(t).to(device)          # (nL, S, Lmax)
        self.total = self.table.sum(-1)                       # (nL, S): all taps of a row

    def axis(self, li: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, pad: torch.Tensor,
             length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per item, the matrix from the ``length`` frame pixels of one axis to the S outputs (zero
        outside the crop ``[lo, hi)``, which sits at ``pad`` in the square) and the weight of the
        padding taps.

        Shapes: li, lo, hi, pad (B,) int64 -> (B, S, length), (B, S)
        """
        c = torch.arange(length, device=li.device)
        v = c[None] - lo[:, None] + pad[:, None]                            # (B, length) square coord
        inside = (c[None] >= lo[:, None]) & (c[None] < hi[:, None])
        v = torch.where(inside, v, torch.zeros_like(v))
        m = self.table[li[:, None], :, v] * inside[..., None]                # (B, length, S)
        m = m.transpose(1, 2)
        return m, self.total[li] - m.sum(-1)


def resize_crops(images: torch.Tensor, boxes: np.ndarray, fill: int, size: int, tables: _Tables) -> torch.Tensor:
    """``resize_lanczos(pad_square(crop(image, box), fill)[0], size, size)`` for a batch, exactly
    (a side already equal to ``size`` gives the identity matrix: PIL's unchanged square).

    Shapes: images (B, N, C, H, W) uint8; boxes (B, 4) int (x0, x1, y0, y1) -> (B, N, C, S, S)
    float64 holding 0..255
    """
    B, N, C, H, W = images.shape
    boxes = np.asarray(boxes, dtype=np.int64)
    L = (np.maximum(boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]) + 15) // 16 * 16
    li = np.array([tables.index[int(v)] for v in L])
    # host-side numbers go to the device in one copy: li, x0, x1, y0, y1, left pad, top pad
    cols = np.stack([li, boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3],
                     (L - (boxes[:, 1] - boxes[:, 0])) // 2, (L - (boxes[:, 3] - boxes[:, 2])) // 2])
    li, x0, x1, y0, y1, left, top = torch.from_numpy(cols).to(images.device).unbind(0)
    cx, fx = tables.axis(li, x0, x1, left, W)                               # (B, S, W), (B, S)
    cy, fy = tables.axis(li, y0, y1, top, H)                                # (B, S, H), (B, S)
    x = images.to(torch.float64)
    rows = _shift_clip(torch.einsum("bnchw,bsw->bnchs", x, cx) + (fill * fx)[:, None, None, None])
    pad_row = _shift_clip(fill * tables.total[li])                           # (B, S): a row of fill
    out = torch.einsum("bth,bnchs->bncts", cy, rows) + (fy[:, :, None] * pad_row[:, None, :])[:, None, None]
    return _shift_clip(out)


class PreloadedData:
    """Every clip of ``dataset`` (a :class:`MimoDataset`) in ``device`` memory, and batches of its
    items prepared there (see the module docstring). Needs clips of one frame size."""

    def __init__(self, dataset: MimoDataset, device: str | torch.device = "cpu"):
        self.dataset, self.device = dataset, torch.device(device)
        clips = dataset.clips
        shapes = {c.frames.shape[1:3] for c in clips}
        if len(shapes) != 1:
            raise ClipError(f"preload: needs clips of one frame size, got {sorted(shapes)} "
                            f"(train without --preload)")
        (H, W), S = shapes.pop(), dataset.size
        self.H, self.W, Fmax = H, W, max(c.num_frames for c in clips)

        def stack(name, channels):
            out = torch.zeros((len(clips), Fmax, channels, H, W), dtype=torch.uint8)
            for k, c in enumerate(clips):
                a = getattr(c, name)
                if a is not None:
                    a = torch.from_numpy(np.array(a))
                    out[k, :c.num_frames] = a.permute(0, 3, 1, 2) if a.ndim == 4 else a[:, None]
            return out.to(self.device)

        self.frames, self.codes, self.scene = (stack(n, 3) for n in ("frames", "codes", "scene"))
        self.occlusion = stack("occlusion", 1)
        # per-frame body boxes (x0, x1, y0, y1); no body: an empty box that a union ignores
        boxes = np.tile(np.array([W, 0, H, 0]), (len(clips), Fmax, 1))
        for k, c in enumerate(clips):
            for f, m in enumerate(human_mask(np.asarray(c.codes))):
                b = frame_box(m)
                if b is not None:
                    boxes[k, f] = b
        self.boxes = boxes
        sides = sorted({L for L in range(16, -(-max(H, W) // 16) * 16 + 1, 16)})
        self.lanczos = _Tables(sides, S, "lanczos", self.device)
        self._characters = {}  # (clip, j) -> (reference (3, S, S), clip (3, 224, 224)) prepared once

    def _window_boxes(self, k: np.ndarray, start: np.ndarray) -> np.ndarray:
        N = self.dataset.num_frames
        b = self.boxes[k[:, None], start[:, None] + np.arange(N)[None]]          # (B, N, 4)
        box = np.stack([b[..., 0].min(1), b[..., 1].max(1), b[..., 2].min(1), b[..., 3].max(1)], 1)
        none = box[:, 1] <= box[:, 0]
        box[none] = (0, self.W, 0, self.H)
        return box

    def batch(self, indices) -> dict:
        """The items ``indices`` of the dataset, collated (see the module docstring for shapes)."""
        ds, S, N = self.dataset, self.dataset.size, self.dataset.num_frames
        draws = [ds.draw(int(i)) for i in indices]
        k = np.array([d[0] for d in draws])
        start = np.array([d[1] for d in draws])
        boxes = self._window_boxes(k, start)
        kt = torch.from_numpy(k).to(self.device)[:, None]
        ft = torch.from_numpy(start[:, None] + np.arange(N)[None]).to(self.device)

        def square(images, fill):
            return resize_crops(images[kt, ft], boxes, fill, S, self.lanczos).float().div_(255.0)

        frames = square(self.frames, 255).transpose(1, 2).mul_(2).sub_(1)
        scene = square(self.scene, 255).transpose(1, 2).mul_(2).sub_(1)
        codes = square(self.codes, 0).transpose(1, 2)
        occlusion = square(self.occlusion, 0)[:, :, 0]
        refs = [self._reference(kk, d[2]) for kk, d in zip(k.tolist(), draws)]
        return {"frames": frames.contiguous(), "scene": scene.contiguous(), "codes": codes.contiguous(),
                "occlusion": occlusion, "reference": torch.stack([r[0] for r in refs]),
                "clip": torch.stack([r[1] for r in refs])}

    def _reference(self, k: int, ref: tuple[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
        kind, i = ref
        if kind == "character" and (k, i) in self._characters:
            return self._characters[(k, i)]
        from mimo.pipeline.frames import resize_lanczos
        from mimo.pipeline.roi import pad_square

        from .dataset import _to_tensor, clip_pixels

        if kind == "frame":  # a frame cropped to its own box: the same batched resize
            box = self.boxes[k, i]
            if box[1] <= box[0]:
                box = np.array([0, self.W, 0, self.H])
            img = resize_crops(self.frames[k, i][None, None], box[None], 255, self.dataset.size,
                               self.lanczos)[0, 0]
            u8 = img.to(torch.uint8)
            return u8.float().div(255).mul(2).sub(1), _clip_pixels_gpu(u8)
        image = MimoDataset.reference_image(self.dataset.clips[k], ref)
        r = resize_lanczos(pad_square(np.asarray(image), 255)[0], self.dataset.size, self.dataset.size)
        out = (_to_tensor(r[None], True)[:, 0].to(self.device), clip_pixels(r).to(self.device))
        self._characters[(k, i)] = out
        return out


def _clip_pixels_gpu(image: torch.Tensor) -> torch.Tensor:
    """:func:`mimo.data.dataset.clip_pixels` (PIL bicubic to 224², mean/std) of a (3, S, S) uint8
    image on the device. Shapes: -> (3, 224, 224) float32"""
    from mimo.pipeline.pipeline import CLIP_MEAN, CLIP_SIZE, CLIP_STD

    S = image.shape[-1]
    m = torch.from_numpy(resample_matrix(S, CLIP_SIZE, "bicubic")).to(image.device)
    x = image.double()
    if S != CLIP_SIZE:
        x = _shift_clip(torch.einsum("chw,sw->chs", x, m))
        x = _shift_clip(torch.einsum("th,chs->cts", m, x))
    x = x.float() / 255.0
    mean = torch.tensor(CLIP_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=image.device).view(3, 1, 1)
    return (x - mean) / std


def preload(root: str | Path, num_frames: int, size: int, items_per_epoch: int | None = None,
            seed: int = 0, device: str | torch.device = "cpu") -> PreloadedData:
    """``PreloadedData(MimoDataset(root, ...), device)``."""
    return PreloadedData(MimoDataset(root, num_frames=num_frames, size=size,
                                     items_per_epoch=items_per_epoch, seed=seed), device)
