"""Pasting generated ROI crops back into full frames (docs/MIMO.md §8.4), with our own feather mask.

The official release blends with 16 feathered alpha images from its assets (not available to us).
**Our feather mask** (:func:`feather_mask`): alpha 1 inside the crop, falling linearly to 0 over a
band of ``r = max(1, round(0.08 * min(h, w)))`` pixels along every side of the crop that does not
touch the image border — alpha(d) = min(1, (d + 0.5) / r) at distance d pixels from that side,
the minimum over sides. Sides on the image border keep alpha 1, as the official masks do.

Per frame (float arithmetic, one truncation to uint8 at the end, as the official code):
    crop   = bicubic-resize(uint8(trunc(255 · generated)), padded size), padding removed
    canvas = white frame with ``crop`` pasted at the box
    res    = canvas · m + scene · (1 − m)
    res    = res · (1 − o) + occluder_source · o           (o = occlusion / 255, when given)
    res    = old · (1 − f) + res · f, f = (j + 1) / 5       (j-th overlap frame with the previous span)
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .roi import Box, RoiSpan

FEATHER_FRACTION = 0.08


def feather_mask(h: int, w: int, sides: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """Alpha of a crop of h×w; ``sides`` = feather (top, bottom, left, right).

    Shapes:
        returns (h, w) float32 in [0, 1]
    """
    r = max(1, round(FEATHER_FRACTION * min(h, w)))
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    m = np.ones((h, w), np.float32)
    for feather, d in zip(sides, (y, h - 1 - y, x, w - 1 - x)):
        if feather:
            m = np.minimum(m, np.minimum(1.0, (d + 0.5) / r))
    return m


def box_feather_sides(box: Box, H: int, W: int) -> tuple[bool, bool, bool, bool]:
    """Which sides of ``box`` get feathered: those not touching the image border."""
    x0, x1, y0, y1 = box
    return (y0 > 0, y1 < H, x0 > 0, x1 < W)


def paste_frame(generated: np.ndarray, box: Box, padded_side: int, pads: tuple[int, int, int, int],
                scene: np.ndarray, occlusion: np.ndarray | None = None,
                occluder_source: np.ndarray | None = None) -> np.ndarray:
    """Composite one generated crop into its full frame (before any span crossfade).

    Shapes:
        generated (S', S', 3) float in [0, 1]; scene, occluder_source (H, W, 3) uint8;
        occlusion (H, W) uint8; returns (H, W, 3) float32 in [0, 255]
    """
    H, W = scene.shape[:2]
    x0, x1, y0, y1 = box
    top, bottom, left, right = pads
    u8 = (np.clip(generated, 0.0, 1.0) * 255).astype(np.uint8)
    if u8.shape[:2] != (padded_side, padded_side):
        u8 = np.asarray(Image.fromarray(u8).resize((padded_side, padded_side), Image.BICUBIC))
    crop = u8[top:padded_side - bottom, left:padded_side - right]
    if crop.shape[:2] != (y1 - y0, x1 - x0):
        raise ValueError(f"pads: crop {crop.shape[:2]} does not match box {(y1 - y0, x1 - x0)}")
    canvas = np.full((H, W, 3), 255.0, np.float32)
    canvas[y0:y1, x0:x1] = crop
    m = np.zeros((H, W, 1), np.float32)
    m[y0:y1, x0:x1, 0] = feather_mask(y1 - y0, x1 - x0, box_feather_sides(box, H, W))
    res = canvas * m + scene.astype(np.float32) * (1.0 - m)
    if occlusion is not None:
        o = occlusion.astype(np.float32)[..., None] / 255.0
        src = scene if occluder_source is None else occluder_source
        res = res * (1.0 - o) + src.astype(np.float32) * o
    return res


class SpanCompositor:
    """Push-based :func:`composite_spans`: feed generated frames in order as they are decoded,
    get back every output frame as soon as it is final (a frame in a span overlap waits for the
    next span's crossfade), so a caller can stream while the rest decode.

    ``push(generated_frame)`` -> list of ``(frame_index, (H, W, 3) uint8)``; each source frame is
    returned exactly once, in order, over all pushes.
    """

    def __init__(self, spans: list[RoiSpan], layout: list[tuple[int, tuple]], scene: np.ndarray,
                 occlusion: np.ndarray | None = None, occluder_source: np.ndarray | None = None):
        self.spans, self.layout, self.scene = spans, layout, scene
        self.occlusion, self.occluder_source = occlusion, occluder_source
        self.pending: dict[int, np.ndarray] = {}
        self.k = self.j = 0  # span index, frame index within the span

    def push(self, generated: np.ndarray) -> list[tuple[int, np.ndarray]]:
        if self.k >= len(self.spans):
            raise ValueError("generated: more frames pushed than the spans hold")
        span = self.spans[self.k]
        side, pads = self.layout[self.k]
        i = span.frames[self.j]
        res = paste_frame(generated, span.box, side, pads, self.scene[i],
                          None if self.occlusion is None else self.occlusion[i],
                          None if self.occluder_source is None else self.occluder_source[i])
        if i in self.pending:  # overlap with the previous span: crossfade into its result
            f = (self.j + 1) / 5.0
            res = self.pending.pop(i).astype(np.float32) * (1.0 - f) + res * f
        res = np.clip(res, 0, 255).astype(np.uint8)
        # frames from the next span's early start on wait for its crossfade; the others are final
        nxt = self.spans[self.k + 1].first if self.k + 1 < len(self.spans) else span.stop
        self.j += 1
        if self.j == len(span.frames):
            self.k, self.j = self.k + 1, 0
        if i >= nxt:
            self.pending[i] = res
            return []
        return [(i, res)]


def composite_spans(generated: np.ndarray, spans: list[RoiSpan], layout: list[tuple[int, tuple]],
                    scene: np.ndarray, occlusion: np.ndarray | None = None,
                    occluder_source: np.ndarray | None = None):
    """Yield ``(frame_index, (H, W, 3) uint8)`` for every source frame, in order, each once.

    ``generated`` holds the pipeline output for the concatenated span sequence (span k's frames
    ``spans[k].frames`` in order); ``layout[k] = (padded_side, pads)`` of span k. Overlap frames
    are crossfaded with the previous span's result.

    Shapes:
        generated (L, S', S', 3) float in [0, 1]; scene, occluder_source (F, H, W, 3) uint8;
        occlusion (F, H, W) uint8
    """
    compositor = SpanCompositor(spans, layout, scene, occlusion, occluder_source)
    for frame in generated:
        yield from compositor.push(frame)
