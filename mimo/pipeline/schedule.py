"""Sampler and context windows of the official pipeline (docs/MIMO.md §7, §7.1).

* :func:`make_scheduler` builds diffusers' ``DDIMScheduler`` with the official settings: v-prediction,
  zero-terminal-SNR betas, trailing spacing. With 25 steps it visits 999, 959, ..., 39; ā_0 = 0.99915,
  ā_39 = 0.96026, ā_999 = 0 (pinned by tests).
* :func:`context_windows` reproduces the "uniform" context schedule as the official code calls it
  (step 0 at every step, stride 1, closed loop): fixed windows that wrap around the end.
* :class:`Schedule`: what a denoising schedule provides to the pipeline (exact: ``exact.py``;
  fast with its shortcuts: ``fast.py``), with :class:`Plan` and :class:`DenoiseInputs`.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable

import torch

MAX_WINDOW = 32  # the motion modules' positional encoding has 32 positions (docs/MIMO.md §11.6)

SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=True,
    steps_offset=1,
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
)


def make_scheduler():
    """diffusers ``DDIMScheduler`` configured exactly as the official inference config (docs/MIMO.md §1)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


def ddim_step_reference(v: torch.Tensor, t: int, x: torch.Tensor, alphas_cumprod: torch.Tensor,
                        prev_t: int) -> torch.Tensor:
    """The η=0 v-prediction DDIM update written out from docs/MIMO.md §7 (used to cross-check diffusers).

    Shapes:
        v, x: any shape, same; returns the same shape
    """
    a_t = alphas_cumprod[t]
    a_prev = alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * v
    eps = a_t.sqrt() * v + (1 - a_t).sqrt() * x
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def context_windows(num_frames: int, size: int = 24, overlap: int = 4, closed_loop: bool = True) -> list[list[int]]:
    """Frame indices of each context window, in processing order.

    Windows start at 0, size−overlap, 2(size−overlap), ... while the start is < ``num_frames``
    (closed loop: the last windows wrap around to frame 0) — or, with ``closed_loop=False``, while
    the window ends inside the clip plus the overlap (no wrap; the last window is shifted back to
    end at the last frame). One window of all frames when ``num_frames <= size``.
    """
    if not (isinstance(num_frames, int) and num_frames >= 1):
        raise ValueError(f"num_frames: expected a positive integer, got {num_frames!r}")
    if not (isinstance(size, int) and 1 <= size <= MAX_WINDOW):
        raise ValueError(f"size: expected a window of 1..{MAX_WINDOW} frames, got {size!r}")
    if not (isinstance(overlap, int) and 0 <= overlap < size):
        raise ValueError(f"overlap: expected 0..size-1 = 0..{size - 1}, got {overlap!r}")
    if num_frames <= size:
        return [list(range(num_frames))]
    hop = size - overlap
    if closed_loop:
        return [[k % num_frames for k in range(j, j + size)] for j in range(0, num_frames, hop)]
    count = math.ceil((num_frames - size) / hop) + 1
    starts = [min(j * hop, num_frames - size) for j in range(count)]
    return [list(range(j, j + size)) for j in starts]


@dataclasses.dataclass
class Plan:
    """How one generation runs: the context windows, windows per UNet call, VAE chunks and the
    call layout that compiled blocks specialise on (see ``MimoPipeline._announce_compile``)."""

    windows: list[list[int]]
    per_call: int
    encode_chunk: int
    decode_chunk: int
    layout: tuple


@dataclasses.dataclass
class DenoiseInputs:
    """What the denoising loop of a schedule reads.

    Shapes:
        latents        (1, 4, F, h, w)  initial noise (dtype: the schedule's ``latent_dtype``)
        scene_latents  (1, 4, F, h, w)  model dtype
        pose           schedule-specific: (1, C0, F, h, w) tensor (exact) or a per-frame store (fast)
        clip           (1, 1, D)        CLIP token of the character
        bank           ReferenceBank    written by the schedule's :meth:`Schedule.reference`
    """

    latents: torch.Tensor
    scene_latents: torch.Tensor
    pose: object
    clip: torch.Tensor
    bank: object


class Schedule(abc.ABC):
    """A denoising schedule of :class:`~mimo.pipeline.pipeline.MimoPipeline`: everything that
    differs between the official numerics (:class:`mimo.pipeline.exact.ExactSchedule`) and fast
    mode with its shortcuts (:class:`mimo.pipeline.fast.FastSchedule`). The pipeline calls, in
    order: :meth:`plan`, :meth:`reference`, :meth:`pose`, :meth:`denoise`.

    ``on_step(step, timestep, latents, x0)`` is called after every step with the predicted clean
    latent ``x0`` (1, 4, F, h, w); ``check_cancel()`` between UNet calls.
    """

    name = ""
    #: frames per window when the caller gives none
    default_context = 24

    @abc.abstractmethod
    def latent_dtype(self, pipe) -> torch.dtype:
        """dtype of the initial noise, the latents and the sampler."""
        ...

    @abc.abstractmethod
    def plan(self, pipe, num_frames: int, height: int, width: int, context: int, overlap: int,
             windows_per_call: int | None) -> Plan:
        ...

    @abc.abstractmethod
    def reference(self, pipe, ref_latent: torch.Tensor, clip: torch.Tensor):
        """The reference bank from the reference latent (1, 4, h, w) and CLIP token (1, 1, D)."""
        ...

    @abc.abstractmethod
    def pose(self, pipe, codes, width: int, height: int):
        """Pose-guider features of every code frame, in the form :meth:`denoise` reads."""
        ...

    @abc.abstractmethod
    def denoise(self, pipe, inputs: DenoiseInputs, plan: Plan, steps: int, guidance_scale: float,
                on_step: Callable, check_cancel: Callable) -> torch.Tensor:
        """Run the sampler; returns the final latents (1, 4, F, h, w)."""
        ...
