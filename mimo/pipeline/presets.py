"""Generation modes (quality presets) and the defaults each one owns.

A preset names a denoising schedule of the pipeline (``exact``: the official pipeline's numerics,
:mod:`mimo.pipeline.exact`; ``fast``: the same networks with the departures listed in
:mod:`mimo.pipeline.fast`), the shortcuts it takes on top of fast mode (:class:`Shortcuts`, each a
switch measured on its own by ``benchmarks/presets.py``), and the settings a job uses when the
caller leaves them unset (``None`` on the wire, an omitted flag on the command line). Every front
end (CLI, server, add-on) resolves defaults here, through the job builder. This module imports
nothing heavy: front ends read it without torch.
"""
from __future__ import annotations

import dataclasses
import numbers

SOLVERS = ("ddim", "dpm++2m", "unipc")
ATTENTION_BACKENDS = ("sdpa", "fa3", "fa4")


def is_int(v: object) -> bool:
    """An integer (Python's or NumPy's), not a bool: how every setting of a job is checked."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Shortcuts:
    """Ways to do less work than fast mode; the defaults are all off (fast mode itself).

    solver: the sampler: ``ddim`` (the official DDIM), ``dpm++2m`` (DPM-Solver++ 2M) or ``unipc``
        (UniPC, order 2), each for v-prediction on the zero-terminal-SNR trailing timesteps.
    guidance_interval: (low, high) timesteps: classifier-free guidance only where
        low <= t <= high; elsewhere the unconditional half is not computed (v = v_cond).
        None: guidance at every step.
    reuse_interval: feature reuse across steps (DeepCache-style): the full UNet every k-th step;
        between them only the shallowest blocks run and the deeper features of the last full
        step are reused. 1: off.
    kv_pool: self-attention keys and values at the highest resolution average-pooled by this
        factor per side (the reference tokens once per job). 1: off.
    attention: kernel for the spatial self-attentions: ``sdpa`` (PyTorch's, cuDNN on Hopper),
        ``fa3`` (the ``fa3-fwd`` package) or ``fa4`` (``flash-attn-4``); unsupported shapes and
        devices fall back to ``sdpa``.
    """

    solver: str = "ddim"
    guidance_interval: tuple[int, int] | None = None
    reuse_interval: int = 1
    kv_pool: int = 1
    attention: str = "sdpa"

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {', '.join(SOLVERS)}, got {self.solver!r}")
        gi = self.guidance_interval
        if gi is not None and not (isinstance(gi, tuple) and len(gi) == 2 and all(is_int(t) for t in gi)
                                   and 0 <= gi[0] <= gi[1] <= 999):
            raise ValueError(f"guidance_interval: expected a tuple (low, high) of timesteps with 0 <= low "
                             f"<= high <= 999, got {gi!r}")
        if not (is_int(self.reuse_interval) and 1 <= self.reuse_interval <= 10):
            raise ValueError(f"reuse_interval: expected 1..10, got {self.reuse_interval!r}")
        if not (is_int(self.kv_pool) and self.kv_pool in (1, 2, 4)):
            raise ValueError(f"kv_pool: expected 1, 2 or 4, got {self.kv_pool!r}")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention: expected one of {', '.join(ATTENTION_BACKENDS)}, "
                             f"got {self.attention!r}")

    @property
    def deviations(self) -> list[str]:
        """One line per shortcut that is on (what it changes against fast mode)."""
        out = []
        if self.solver != "ddim":
            out.append(f"{self.solver} sampler instead of DDIM")
        if self.guidance_interval is not None:
            out.append("guidance only for timesteps {}..{} (the unconditional half skipped elsewhere)"
                       .format(*self.guidance_interval))
        if self.reuse_interval > 1:
            out.append(f"deep features reused: full UNet every {self.reuse_interval} steps")
        if self.kv_pool > 1:
            out.append(f"self-attention keys/values at the highest resolution pooled {self.kv_pool}x{self.kv_pool}")
        if self.attention != "sdpa":
            out.append(f"{self.attention} attention kernel (same math)")
        return out

    @property
    def key(self) -> tuple:
        """What changes the UNet's call layout (compiled blocks specialise on it); () when off."""
        return tuple(f for f in (("cfg-interval",) if self.guidance_interval else ())
                     + (("reuse", self.reuse_interval),) * (self.reuse_interval > 1)
                     + (("kv_pool", self.kv_pool),) * (self.kv_pool > 1)
                     + (("attention", self.attention),) * (self.attention != "sdpa"))


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    schedule: str  # "exact" | "fast": which denoising schedule the pipeline runs
    context: int  # frames per context window
    overlap: int  # frames shared by neighbouring windows
    steps: int  # denoising steps
    summary: str  # one line for --help, the panel and the server's capabilities
    shortcuts: Shortcuts = Shortcuts()  # on top of the fast schedule (exact: none)

    def __post_init__(self):
        if self.schedule not in ("exact", "fast"):
            raise ValueError(f"schedule: expected 'exact' or 'fast', got {self.schedule!r}")
        if self.schedule == "exact" and self.shortcuts != Shortcuts():
            raise ValueError("shortcuts: the exact schedule takes none")
        for name, lo, hi in (("steps", 1, 1000), ("context", 1, 32), ("overlap", 0, self.context - 1)):
            v = getattr(self, name)
            if not (is_int(v) and lo <= v <= hi):
                raise ValueError(f"{name}: expected an integer in {lo}..{hi}, got {v!r}")

    @property
    def deviations(self) -> list[str]:
        """How this preset departs from the official pipeline, one line each."""
        if self.schedule == "exact":
            return []
        out = ["fast schedule (mimo/pipeline/fast.py: non-wrapping windows, batched windows, bf16 on "
               "CUDA, one reference row, float32 latents)"]
        if self.context != 24:
            out.append(f"{self.context}-frame windows")
        if self.steps != 25:
            out.append(f"{self.steps} steps instead of 25")
        return out + self.shortcuts.deviations


PRESETS: dict[str, Preset] = {
    "exact": Preset("exact", "exact", context=24, overlap=4, steps=25,
                    summary="the official pipeline's numerics (24-frame windows, fp16 reference bank)"),
    "fast": Preset("fast", "fast", context=32, overlap=4, steps=25,
                   summary="same networks and steps, 32-frame windows, batched windows, bf16"),
    "balanced": Preset("balanced", "fast", context=32, overlap=4, steps=12,
                       shortcuts=Shortcuts(solver="dpm++2m", guidance_interval=(0, 800), kv_pool=2),
                       summary="fast mode, 12 DPM-Solver++ steps, guidance off at the noisiest steps, "
                               "pooled keys at full resolution"),
    "draft": Preset("draft", "fast", context=32, overlap=2, steps=6,
                    shortcuts=Shortcuts(solver="dpm++2m", guidance_interval=(0, 800), reuse_interval=2,
                                        kv_pool=4),
                    summary="previews while blocking a shot: 6 steps, reused deep features, "
                            "heavily pooled keys"),
}


def preset(mode: str) -> Preset:
    """The preset called ``mode``; ``ValueError`` naming the known ones otherwise."""
    try:
        return PRESETS[mode]
    except (KeyError, TypeError):
        raise ValueError(f"expected one of {', '.join(PRESETS)}, got {mode!r}") from None


def default_overlap(p: Preset, context: int | None) -> int:
    """The overlap a job of preset ``p`` gets when it names none: the preset's own, halved to
    ``context // 2`` for a window given shorter than that (so a short ``context`` alone is valid)."""
    short = is_int(context) and 1 <= context <= p.overlap
    return context // 2 if short else p.overlap
