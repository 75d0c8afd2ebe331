"""The reference image of the character, prepared one way for every front end.

The rule (what the official scripts do after matting, docs/MIMO.md §8.3): an image with an alpha
channel — or an RGB image with a separate figure mask — is composited on white and cropped to the
figure (:func:`mimo.pipeline.roi.crop_character`); an image without either is used as it is. The
CLI (a file, ``--character-mask``) and the server (PNG/JPEG bytes from the wire) both come here,
so a transparent PNG gives the same reference whichever door it came through.

Shapes:
    -> (Hc, Wc, 3) uint8 RGB
"""
from __future__ import annotations

import io
import os

import numpy as np

from mimo.errors import FieldError

#: largest character image decoded (width x height), far beyond any photograph
MAX_CHARACTER_PIXELS = 8192 * 8192


def prepare_character(image: bytes | str | os.PathLike | np.ndarray,
                      mask: str | os.PathLike | np.ndarray | None = None) -> np.ndarray:
    """Decode ``image`` (encoded bytes, a file path, or an (H, W, 3|4) uint8 array) and apply the
    rule of this module. ``mask`` (a file path or an (H, W) uint8 array, 255 = figure) replaces
    the image's own alpha. Errors are :class:`~mimo.errors.FieldError` on ``character`` or
    ``character_mask``.

    Shapes:
        image (H, W, 3|4) uint8 or encoded; mask (H, W) uint8 -> (h', w', 3) uint8
    """
    rgb, alpha = _rgb_alpha(image)
    if mask is not None:
        alpha = _mask(mask)
        if alpha.shape != rgb.shape[:2]:
            raise FieldError("character_mask", f"expected {rgb.shape[1]}x{rgb.shape[0]} like the character, "
                                               f"got {alpha.shape[1]}x{alpha.shape[0]}")
    from .roi import crop_character

    return np.ascontiguousarray(crop_character(rgb, alpha))


def _rgb_alpha(image) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4) or 0 in image.shape:
            raise FieldError("character", f"expected an (H, W, 3) or (H, W, 4) uint8 image, got "
                                          f"{image.dtype} of shape {image.shape}")
        return np.ascontiguousarray(image[..., :3]), (image[..., 3].copy() if image.shape[2] == 4 else None)
    rgba, has_alpha = _decode(image, "character")
    return np.ascontiguousarray(rgba[..., :3]), (rgba[..., 3].copy() if has_alpha else None)


def _mask(mask) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        if mask.dtype != np.uint8 or mask.ndim != 2:
            raise FieldError("character_mask", f"expected an (H, W) uint8 mask, got {mask.dtype} of "
                                               f"shape {mask.shape}")
        return mask
    rgba, _ = _decode(mask, "character_mask", mode="L")
    return rgba


def _decode(source, field: str, mode: str = "RGBA") -> tuple[np.ndarray, bool]:
    """PNG/JPEG/... bytes or file -> (array in ``mode``, whether the image has an alpha channel)."""
    from PIL import Image

    what = "file" if isinstance(source, (str, os.PathLike)) else "image"
    try:
        src = source if what == "file" else io.BytesIO(bytes(source))
        with Image.open(src) as im:
            if im.width * im.height > MAX_CHARACTER_PIXELS:
                raise FieldError(field, f"{im.width}x{im.height} pixels, limit {MAX_CHARACTER_PIXELS}")
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
                im.mode == "P" and "transparency" in im.info)
            return np.asarray(im.convert(mode), dtype=np.uint8).copy(), has_alpha
    except FieldError:
        raise
    except FileNotFoundError:
        raise FieldError(field, f"file {os.fspath(source)!r} not found") from None
    except Exception as exc:
        raise FieldError(field, f"not a decodable image ({type(exc).__name__}: {exc})") from None
