"""The scene without the person, the occlusion layer, and mask clean-up (numpy + OpenCV).

* :func:`clean_mask`: drop connected components (and fill holes) smaller than ``min_area``
  pixels, so specks of a segmenter do not become layers.
* :class:`PlateBuilder`: for a static camera, the background plate is the per-pixel median of
  up to ``max_samples`` frames spread over the clip, each pixel over the samples where the
  (grown) person mask leaves it visible; pixels no sample shows are inpainted (OpenCV Telea, or
  a diffusers pipeline: :mod:`mimo.decompose.inpaint`). Memory is bounded by the samples, not
  the clip's length.
* :func:`scene_frame`: the frame with the person's pixels (grown mask) replaced by the plate;
  with a moving camera (no plate) they are inpainted from the frame itself.
* :func:`occlusion_layer`: pixels where the fitted body is but the person's mask is not, and the
  scene's depth there is nearer than the body's: something stands in front of the person.
* :func:`align_depth`: a relative (inverse-depth) map made metric against the fitted body's
  depth over the person's pixels (least squares on 1/z).
"""
from __future__ import annotations

import numpy as np


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise ImportError("mimo decompose needs OpenCV: pip install 'mimo-blender[decompose]' "
                          "(opencv-python-headless)") from e
    return cv2


def clean_mask(mask: np.ndarray, min_area: int) -> np.ndarray:
    """``mask`` without foreground components, or background holes, smaller than ``min_area``.

    Shapes: (H, W) bool -> (H, W) bool
    """
    cv2 = _cv2()
    out = mask.astype(bool).copy()
    for value in (True, False):  # specks first, then holes
        sel = (out == value).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(sel, connectivity=8)
        small = np.nonzero(stats[1:, cv2.CC_STAT_AREA] < min_area)[0] + 1
        if len(small):
            out[np.isin(labels, small)] = not value
    return out


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by a (2p+1)² square. Shapes: (H, W) bool -> (H, W) bool"""
    if pixels <= 0:
        return mask.astype(bool)
    cv2 = _cv2()
    k = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), k) > 0


def inpaint(image: np.ndarray, holes: np.ndarray, radius: int = 5) -> np.ndarray:
    """OpenCV Telea inpainting of ``holes``. Shapes: (H, W, 3) uint8, (H, W) bool -> (H, W, 3)"""
    if not holes.any():
        return image.copy()
    cv2 = _cv2()
    return cv2.inpaint(np.ascontiguousarray(image), holes.astype(np.uint8), radius, cv2.INPAINT_TELEA)


class PlateBuilder:
    """Collect sample frames and masks, then :meth:`plate`. ``sample_ids(F)`` says which frames."""

    def __init__(self, max_samples: int = 32):
        self.max_samples = max_samples
        self.frames: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def sample_ids(self, num_frames: int) -> set[int]:
        n = min(num_frames, self.max_samples)
        return set(np.round(np.linspace(0, num_frames - 1, n)).astype(int).tolist())

    def add(self, frame: np.ndarray, person: np.ndarray) -> None:
        """Shapes: frame (H, W, 3) uint8, person (H, W) bool (already grown)"""
        self.frames.append(frame)
        self.masks.append(person.astype(bool))

    def holes(self) -> np.ndarray:
        """Pixels no sample shows. Shapes: -> (H, W) bool"""
        return np.logical_and.reduce(self.masks)

    def plate(self, inpainter=None) -> tuple[np.ndarray, np.ndarray]:
        """The background plate and where it had to be inpainted, by ``inpainter(image, holes)``
        (e.g. :class:`mimo.decompose.inpaint.DiffusersInpainter`) or, by default, OpenCV.

        Shapes: -> (H, W, 3) uint8, (H, W) bool
        """
        f = np.stack(self.frames).astype(np.float32)
        m = np.stack(self.masks)
        f[m] = np.nan
        seen = ~m.all(0)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: inpainted below
                med = np.nanmedian(f, axis=0)
        plate = np.where(seen[..., None], np.nan_to_num(med), 0).round().clip(0, 255).astype(np.uint8)
        if not (~seen).any():
            return plate, ~seen
        return (inpainter or inpaint)(plate, ~seen), ~seen


def scene_frame(frame: np.ndarray, person: np.ndarray, plate: np.ndarray | None) -> np.ndarray:
    """The frame without the person: plate pixels under the (grown) mask, or inpainting.

    Shapes: frame (H, W, 3) uint8, person (H, W) bool, plate (H, W, 3) or None -> (H, W, 3) uint8
    """
    if plate is None:
        return inpaint(frame, person)
    return np.where(person[..., None], plate, frame)


def occlusion_layer(body: np.ndarray, body_depth: np.ndarray, person: np.ndarray,
                    scene_depth: np.ndarray, margin: float = 0.1, min_area: int = 16) -> np.ndarray:
    """Alpha of what stands in front of the person.

    Args:
        body: where the fitted body renders; body_depth: its depth (metres; inf off the body).
        person: the person's (segmented) mask; scene_depth: metric depth of the frame.
        margin: how much nearer (metres) the scene must be than the body.

    Shapes: (H, W) each -> (H, W) uint8 (0 or 255)
    """
    occ = body & ~person & np.isfinite(scene_depth) & (scene_depth < body_depth - margin)
    return (clean_mask(occ, min_area) * 255).astype(np.uint8)


def align_depth(relative: np.ndarray, body_depth: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Metric depth from a relative inverse-depth map: 1/z = a·relative + b fitted where the
    person's pixels and the body's render agree; NaN where the fit gives no positive depth.

    Shapes: relative (H, W), body_depth (H, W), where (H, W) bool -> (H, W) float32
    """
    sel = where & np.isfinite(body_depth) & (body_depth > 0)
    if sel.sum() < 10:
        return np.full(relative.shape, np.nan, np.float32)
    A = np.stack([relative[sel], np.ones(int(sel.sum()))], 1).astype(np.float64)
    a, b = np.linalg.lstsq(A, 1.0 / body_depth[sel].astype(np.float64), rcond=None)[0]
    inv = a * relative.astype(np.float64) + b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inv > 1e-6, 1.0 / inv, np.nan).astype(np.float32)
