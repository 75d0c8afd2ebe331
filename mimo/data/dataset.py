"""``MimoDataset``: random windows of training clips, prepared exactly as inference prepares a job.

Each item is one window of ``num_frames`` consecutive frames of one clip (``num_frames=1`` for
stage 1, single frames) and a reference image of the same character:

* the window is cropped to the union of its frames' human boxes (the box rule of
  :mod:`mimo.pipeline.roi`, the one the MIMO backend uses for a clip of stable box), padded to a
  square (codes with black, ground truth and scene with white, occlusion with 0) and resized with
  Lanczos to ``size`` x ``size`` -- what the backend does to a job's frames before the pipeline;
* the reference is one of the clip's character images when it has them, else a frame drawn from
  another time of the same clip (at least ``num_frames`` away where the clip is long enough),
  cropped to its own box; either way padded square with white and resized, as the backend
  prepares the character.

Items are dicts of float32 tensors:

    frames     (3, N, S, S) in [-1, 1]   the ground truth (VAE input)
    scene      (3, N, S, S) in [-1, 1]   the scene plate (VAE input)
    codes      (3, N, S, S) in [0, 1]    the structured motion codes (pose guider input)
    occlusion  (N, S, S)    in [0, 1]    occlusion alpha (zeros when the clip has none)
    reference  (3, S, S)    in [-1, 1]   the reference image (VAE input)
    clip       (3, 224, 224)             the reference as the CLIP image encoder sees it at
                                         inference (bicubic 224², OpenAI mean/std)

Randomness comes only from the ``seed`` and the item index, so a dataset yields the same items
in any worker process, on any machine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mimo.pipeline.frames import resize_lanczos
from mimo.pipeline.roi import box_union, crop, frame_box, human_mask, pad_square

from .layout import Clip, ClipError, list_clips, read_clip


class MimoDataset(torch.utils.data.Dataset):
    """Windows of ``num_frames`` frames from the clips under ``root`` (a dataset folder or one clip).

    Args:
        root: dataset folder (see :mod:`mimo.data.layout`).
        num_frames: frames per item (1 for stage 1; up to 32 for stage 2; more for evaluation).
        size: side of the square the frames are resized to (a multiple of 8).
        items_per_epoch: ``len(dataset)``; item ``i`` picks its clip and window from ``seed`` and
            ``i`` (default: one item per window start over all clips).
        seed: base of every random choice.
    """

    def __init__(self, root: str | Path, num_frames: int = 1, size: int = 64,
                 items_per_epoch: int | None = None, seed: int = 0):
        if not (isinstance(num_frames, int) and num_frames >= 1):
            raise ValueError(f"num_frames: expected at least 1, got {num_frames!r}")
        if not (isinstance(size, int) and size >= 8 and size % 8 == 0):
            raise ValueError(f"size: expected a multiple of 8 from 8, got {size!r}")
        self.clips: list[Clip] = [read_clip(p) for p in list_clips(root)]
        short = [c for c in self.clips if c.num_frames < num_frames]
        if short:
            raise ClipError(f"{short[0].path}: {short[0].num_frames} frame(s), fewer than a window of "
                            f"{num_frames}")
        self.num_frames, self.size, self.seed = num_frames, size, int(seed)
        self._starts = [c.num_frames - num_frames + 1 for c in self.clips]
        self._len = items_per_epoch if items_per_epoch is not None else int(sum(self._starts))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self._len:
            raise IndexError(index)
        k, start, ref = self.draw(index)
        clip = self.clips[k]
        window = np.arange(start, start + self.num_frames)
        try:
            return self.prepare(clip, window, self.reference_image(clip, ref))
        except ClipError:
            raise
        except Exception as exc:
            raise ClipError(f"{clip.path}: frames {start}..{start + self.num_frames - 1} could not be "
                            f"prepared ({type(exc).__name__}: {exc})") from exc

    def draw(self, index: int) -> tuple[int, int, tuple[str, int]]:
        """The random choices of item ``index``: (clip, first frame of the window, reference),
        the reference being ``("character", j)`` or ``("frame", i)`` of that clip. Every path
        that serves items (this one, :class:`mimo.data.preload.PreloadedData`) draws through here."""
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.integers(len(self.clips)))
        start = int(rng.integers(self._starts[k]))
        return k, start, self._draw_reference(self.clips[k], start, rng)

    def _draw_reference(self, clip: Clip, start: int, rng) -> tuple[str, int]:
        if clip.characters:
            return "character", int(rng.integers(len(clip.characters)))
        window = set(range(start, start + self.num_frames))
        far = [i for i in range(clip.num_frames) if abs(i - start) >= self.num_frames]
        candidates = far or [i for i in range(clip.num_frames) if i not in window] \
            or list(range(clip.num_frames))
        return "frame", int(candidates[int(rng.integers(len(candidates)))])

    @staticmethod
    def reference_image(clip: Clip, ref: tuple[str, int]) -> np.ndarray:
        """The reference before padding: a character image, or a frame cropped to its own box."""
        kind, i = ref
        if kind == "character":
            return clip.characters[i]
        box = frame_box(human_mask(np.asarray(clip.codes[i:i + 1]))[0])
        frame = np.asarray(clip.frames[i])
        return crop(frame, box) if box is not None else frame

    def _reference(self, clip: Clip, window: np.ndarray, rng) -> np.ndarray:
        """A reference for ``window`` drawn from ``rng`` (validation and the yardstick use it)."""
        return self.reference_image(clip, self._draw_reference(clip, int(window[0]), rng))

    def prepare(self, clip: Clip, window: np.ndarray, reference: np.ndarray) -> dict:
        """Crop, pad and resize one window and its reference (see the module docstring)."""
        S = self.size
        codes = np.asarray(clip.codes[window])
        box = None
        for b in (frame_box(m) for m in human_mask(codes)):
            if b is not None:
                box = box_union(box, b)
        H, W = codes.shape[1:3]
        box = box or (0, W, 0, H)

        def square(frames: np.ndarray, fill: int) -> np.ndarray:
            return np.stack([resize_lanczos(pad_square(crop(f, box), fill)[0], S, S) for f in frames])

        occ = clip.occlusion
        if occ is None:
            occlusion = np.zeros((len(window), S, S), np.float32)
        else:
            o = np.asarray(occ[window])[..., None].repeat(3, -1)
            occlusion = square(o, 0)[..., 0].astype(np.float32) / 255.0
        ref = resize_lanczos(pad_square(np.asarray(reference), 255)[0], S, S)
        return {
            "frames": _to_tensor(square(np.asarray(clip.frames[window]), 255), True),
            "scene": _to_tensor(square(np.asarray(clip.scene[window]), 255), True),
            "codes": _to_tensor(square(codes, 0), False),
            "occlusion": torch.from_numpy(occlusion),
            "reference": _to_tensor(ref[None], True)[:, 0],
            "clip": clip_pixels(ref),
        }


def clip_pixels(image: np.ndarray) -> torch.Tensor:
    """The CLIP input of :meth:`mimo.pipeline.MimoPipeline.encode_image` for one image.

    Shapes: image (H, W, 3) uint8 -> (3, 224, 224) float32
    """
    from PIL import Image

    from mimo.pipeline.pipeline import CLIP_MEAN, CLIP_SIZE, CLIP_STD

    img = np.asarray(Image.fromarray(image).resize((CLIP_SIZE, CLIP_SIZE), Image.BICUBIC))
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def _to_tensor(frames: np.ndarray, normalize: bool) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (3, N, S, S) float32 in [-1, 1] or [0, 1]."""
    t = torch.from_numpy(np.array(frames, dtype=np.float32)).div_(255.0).permute(3, 0, 1, 2)
    return t * 2.0 - 1.0 if normalize else t
