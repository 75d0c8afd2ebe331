"""The pieces of the fast schedule's shortcuts (:class:`mimo.pipeline.presets.Shortcuts`) that live
outside the UNet: the samplers, the predicted clean latent for previews, and the bookkeeping of
feature reuse across steps. The attention-side shortcuts (pooled keys, flash kernels) are in
:mod:`mimo.models.blocks` and :mod:`mimo.models.kernels`.
"""
from __future__ import annotations

import torch

from mimo.models.blocks import DeepCacheSlot, pool_bank  # noqa: F401  (pool_bank: re-exported)

from .memory import host_empty
from .schedule import SCHEDULER_CONFIG, make_scheduler


def make_sampler(solver: str):
    """A fresh sampler for ``solver`` on the official noise schedule (docs/MIMO.md §1).

    * ``ddim``: :func:`mimo.pipeline.schedule.make_scheduler` (the official DDIM, η = 0).
    * ``dpm++2m``: diffusers' ``DPMSolverMultistepScheduler``, DPM-Solver++ (data prediction),
      second order, midpoint solver, first order on the last steps of short schedules.
    * ``unipc``: diffusers' ``UniPCMultistepScheduler``, order 2 (bh2), with its corrector.

    Both solvers get the same betas, v-prediction, zero-terminal-SNR rescaling and trailing
    spacing as DDIM, so they visit the same timesteps and follow the same probability-flow ODE;
    with zero terminal SNR diffusers clamps ā_999 to 2⁻²⁴ (σ/α finite), and the last step goes to
    σ = 0 (``final_sigmas_type="zero"``), which is where DDIM's ``set_alpha_to_one`` ends too.
    """
    if solver == "ddim":
        return make_scheduler()
    common = {k: SCHEDULER_CONFIG[k] for k in ("num_train_timesteps", "beta_start", "beta_end",
                                              "beta_schedule", "prediction_type", "rescale_betas_zero_snr",
                                              "timestep_spacing", "steps_offset")}
    if solver == "dpm++2m":
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                           solver_type="midpoint", lower_order_final=True,
                                           final_sigmas_type="zero")
    if solver == "unipc":
        from diffusers import UniPCMultistepScheduler

        return UniPCMultistepScheduler(**common, solver_order=2, solver_type="bh2", predict_x0=True,
                                       final_sigmas_type="zero")
    raise ValueError(f"solver: expected ddim, dpm++2m or unipc, got {solver!r}")


def predicted_x0(sampler, v: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
    """The clean latent a v-prediction implies at timestep ``t``: √ā·x − √(1−ā)·v (for previews).

    Shapes: v, x (1, 4, F, h, w) -> (1, 4, F, h, w)
    """
    a = sampler.alphas_cumprod[int(t)].to(x.device, x.dtype)
    return a.sqrt() * x - (1 - a).sqrt() * v


#: bytes of cached deep features (feature reuse) that may stay on the GPU. A job whose features
#: together fit stays there (one 32-frame CFG window at 784² in bf16: 750 MiB); otherwise every
#: group's feature waits in pinned host memory between its calls, so memory does not grow with
#: the clip's length (the cost: one copy out per full step and one in per reuse step).
DEEP_CACHE_GPU_BUDGET = 1 << 30


class FeatureCache:
    """Which steps run the whole UNet under feature reuse, and the cached feature of each window
    group (:class:`~mimo.models.blocks.DeepCacheSlot`).

    Step ``s`` runs in full when ``s % interval == 0``, and also whenever the group's cached
    feature was made with the other guidance layout (both CFG halves or the conditional half
    only, see the guidance interval): the cached rows must be the rows of the call.

    While the features of all ``groups`` fit ``device_budget`` bytes together (judged by the
    largest one so far) they stay on ``device``; beyond it each one moves to a host buffer (pinned
    on CUDA) once its call is over and comes back for the call that reuses it (on a CPU device the
    move is a plain copy).
    """

    def __init__(self, interval: int, device: torch.device | str = "cpu", groups: int = 1,
                 device_budget: int | None = None):
        self.interval, self.device, self.groups = interval, torch.device(device), groups
        self.device_budget = DEEP_CACHE_GPU_BUDGET if device_budget is None else device_budget
        self.slots: dict[object, tuple[bool, DeepCacheSlot]] = {}  # per window group (and CFG half)
        self.away: dict[object, torch.Tensor] = {}  # group -> its host buffer (refilled in place)

    def mode(self, step: int, guided: bool) -> _StepCache | None:
        """What the UNet calls of ``step`` do (None: reuse is off)."""
        return None if self.interval <= 1 else _StepCache(self, step % self.interval == 0, guided)

    def settle(self, current) -> None:
        """Before ``current``'s call: when the features would not fit the budget together, move
        every other group's feature that is still on the device to its host buffer."""
        features = {g: slot.feature for g, (_, slot) in self.slots.items() if slot.feature is not None}
        if self.groups * max((f.numel() * f.element_size() for f in features.values()), default=0) \
                <= self.device_budget:
            return
        for group, f in features.items():
            if group == current or f is self.away.get(group):
                continue
            buf = self.away.get(group)
            if buf is None or buf.shape != f.shape or buf.dtype != f.dtype:
                buf = self.away[group] = host_empty(f.shape, f.dtype, pinned=self.device.type == "cuda")
            self.slots[group][1].feature = buf.copy_(f, non_blocking=True)

    def fetch(self, group) -> torch.Tensor:
        """The group's cached feature on the device (copied in when it waits on the host)."""
        f = self.slots[group][1].feature
        return f if f.device == self.device else f.to(self.device, non_blocking=True)


class _StepCache:
    def __init__(self, cache: FeatureCache, full: bool, guided: bool):
        self.cache, self.full, self.guided = cache, full, guided

    def slot(self, group) -> DeepCacheSlot:
        """The slot one group's UNet call reads (reuse) or fills (full run)."""
        self.cache.settle(group)
        held = self.cache.slots.get(group)
        if not self.full and held is not None and held[0] == self.guided and held[1].feature is not None:
            return DeepCacheSlot(reuse=True, feature=self.cache.fetch(group))
        slot = DeepCacheSlot(reuse=False)
        self.cache.slots[group] = (self.guided, slot)
        return slot
