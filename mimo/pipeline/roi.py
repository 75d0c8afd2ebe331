"""Human region-of-interest spans (docs/MIMO.md §8.3): find the body in the code frames, split the video
into spans (runs of frames that share one crop box; the official code calls them clips), crop each
span and pad it to a square whose side is a multiple of 16.

Boxes are half-open pixel ranges ``(x0, x1, y0, y1)``: columns x0..x1-1, rows y0..y1-1.

Where the official description leaves integer details open we define them here (and tests pin them):
* gray = 0.299 R + 0.587 G + 0.114 B (ITU-R 601, as OpenCV), body where gray > 10;
* morphology: close with a 5×5 square then open with a 2×2 square, pixels outside the image
  ignored (OpenCV's default border for morphology); the 2×2 kernel's anchor is its (1, 1) cell
  and, as in OpenCV, erosion and dilation both look at offsets {-1, 0} (no kernel reflection);
* margins: ``int(0.1 * height)`` above and below, ``int(0.05 * width)`` left and right;
* even size: an odd side grows by one pixel at its far end (or near end at the border);
* square: side = the longer side rounded up to a multiple of 16, centred on the box centre
  (integer division), then clamped to the image (so boxes at the border may stay non-square);
* frames with no body neither grow a span's box nor take part in the area test; a span that
  never sees a body uses the whole frame.
"""
from __future__ import annotations

import dataclasses

import numpy as np

Box = tuple[int, int, int, int]  # x0, x1, y0, y1 (half-open)
GRAY_THRESHOLD = 10
AREA_RATIO = 0.5
SPAN_OVERLAY = 4


def gray(frames: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, rounded, as OpenCV's RGB2GRAY.

    Shapes:
        frames (..., H, W, 3) uint8; returns (..., H, W) uint8
    """
    f = frames.astype(np.float32)
    return np.rint(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]).astype(np.uint8)


def _shift_reduce(m: np.ndarray, k: int, op, fill: bool) -> np.ndarray:
    """min/max of ``m`` over a k×k window whose anchor is cell (k//2, k//2); outside = ``fill``."""
    a = k // 2
    H, W = m.shape[-2:]
    padded = np.full(m.shape[:-2] + (H + k - 1, W + k - 1), fill, dtype=bool)
    padded[..., a:a + H, a:a + W] = m
    out = None
    for dy in range(k):
        for dx in range(k):
            win = padded[..., dy:dy + H, dx:dx + W]
            out = win.copy() if out is None else op(out, win)
    return out


def _dilate(m, k):
    return _shift_reduce(m, k, np.logical_or, False)


def _erode(m, k):
    return _shift_reduce(m, k, np.logical_and, True)


def human_mask(codes: np.ndarray) -> np.ndarray:
    """Body pixels of code frames: gray > 10, closed (5×5) then opened (2×2).

    Shapes:
        codes (F, H, W, 3) uint8; returns (F, H, W) bool
    """
    m = gray(codes) > GRAY_THRESHOLD
    m = _erode(_dilate(m, 5), 5)
    # OpenCV's opening with an even kernel: erode then dilate over the same offsets {-1, 0}
    return _dilate(_erode(m, 2), 2)


def _make_even(lo: int, hi: int, limit: int) -> tuple[int, int]:
    if (hi - lo) % 2:
        if hi < limit:
            hi += 1
        elif lo > 0:
            lo -= 1
        else:
            hi -= 1
    return lo, hi


def _centre_square(lo: int, hi: int, side: int, limit: int) -> tuple[int, int]:
    c = (lo + hi) // 2
    lo = c - side // 2
    return max(0, lo), min(limit, lo + side)


def frame_box(mask: np.ndarray) -> Box | None:
    """The padded, even, squared box of one frame's body mask (None when there is no body).

    Shapes:
        mask (H, W) bool
    """
    H, W = mask.shape
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    py, px = int(0.1 * (y1 - y0)), int(0.05 * (x1 - x0))
    y0, y1, x0, x1 = max(0, y0 - py), min(H, y1 + py), max(0, x0 - px), min(W, x1 + px)
    y0, y1 = _make_even(y0, y1, H)
    x0, x1 = _make_even(x0, x1, W)
    side = -(-max(y1 - y0, x1 - x0) // 16) * 16
    x0, x1 = _centre_square(x0, x1, side, W)
    y0, y1 = _centre_square(y0, y1, side, H)
    return x0, x1, y0, y1


def box_union(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def box_area(b: Box | None) -> int:
    return 0 if b is None else (b[1] - b[0]) * (b[3] - b[2])


@dataclasses.dataclass(frozen=True)
class RoiSpan:
    """Frames ``first..stop-1`` cropped with ``box``; ``start`` is where the span itself begins
    (``first < start`` for spans that begin early to overlap the previous one)."""

    box: Box
    first: int
    start: int
    stop: int

    @property
    def frames(self) -> range:
        return range(self.first, self.stop)


def roi_spans(codes: np.ndarray, overlay: int = SPAN_OVERLAY) -> list[RoiSpan]:
    """Split a video into spans with a stable human box (docs/MIMO.md §8.3; the official
    run_edit's automatic clips).

    A new span begins at frame i when some earlier frame of the current span has a box smaller than
    half the area of the span's box grown by frame i's box. Every span after the first begins
    ``min(overlay, len(previous span))`` frames early.

    Shapes:
        codes (F, H, W, 3) uint8
    """
    F, H, W = codes.shape[:3]
    boxes = [frame_box(m) for m in human_mask(codes)]
    bounds: list[tuple[int, int, Box | None]] = []  # (start, stop, box) of each span
    start, union, areas = 0, None, []
    for i, b in enumerate(boxes):
        if b is None:
            continue
        grown = box_union(union, b)
        if areas and min(areas) < AREA_RATIO * box_area(grown):
            bounds.append((start, i, union))
            start, union, areas = i, b, [box_area(b)]
        else:
            union = grown
            areas.append(box_area(b))
    bounds.append((start, F, union))
    spans, prev_len = [], 0
    for k, (s, e, box) in enumerate(bounds):
        early = min(overlay, prev_len) if k else 0
        spans.append(RoiSpan(box=box if box is not None else (0, W, 0, H), first=s - early, start=s, stop=e))
        prev_len = e - s
    return spans


def pad_square(img: np.ndarray, value: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Pad to a centred square of side max(H, W) rounded up to a multiple of 16.

    Returns the padded image and (top, bottom, left, right).

    Shapes:
        img (H, W, C) or (H, W); returns (S, S, C) or (S, S)
    """
    h, w = img.shape[:2]
    S = -(-max(h, w) // 16) * 16
    top, left = (S - h) // 2, (S - w) // 2
    pads = (top, S - h - top, left, S - w - left)
    width = ((pads[0], pads[1]), (pads[2], pads[3])) + ((0, 0),) * (img.ndim - 2)
    return np.pad(img, width, constant_values=value), pads


def crop(img: np.ndarray, box: Box) -> np.ndarray:
    """Shapes: img (..., H, W, C) -> (..., y1-y0, x1-x0, C)"""
    x0, x1, y0, y1 = box
    return img[..., y0:y1, x0:x1, :]


def crop_character(image: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """The official reference preparation (docs/MIMO.md §8.3) before :func:`pad_square`: composite on white
    with ``alpha`` and crop to the alpha's bounding box, extended vertically by ``int(0.05 * h)``
    rows on each side (clamped), not horizontally. Without alpha the image is returned as is.

    Shapes:
        image (H, W, 3) uint8; alpha (H, W) uint8 or None; returns (h', w', 3) uint8
    """
    if alpha is None:
        return image
    a = alpha.astype(np.float32)[..., None] / 255.0
    rgb = np.clip(np.rint(image * a + 255.0 * (1.0 - a)), 0, 255).astype(np.uint8)
    rows, cols = np.flatnonzero((alpha > 0).any(1)), np.flatnonzero((alpha > 0).any(0))
    if rows.size == 0:
        return rgb
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy = int(0.05 * (y1 - y0))
    y0, y1 = max(0, y0 - dy), min(alpha.shape[0], y1 + dy)
    return rgb[y0:y1, x0:x1]
