"""Generation modes and the defaults each one owns.

A mode names a schedule of the pipeline (``exact``: the official pipeline's numerics; ``fast``: the
same networks with the departures listed in :mod:`mimo.pipeline.fast`) and the settings a job uses
when the caller leaves them unset (``None`` on the wire, an omitted flag on the command line).
Every front end (CLI, server, add-on) resolves defaults here, through the job builder.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    schedule: str  # "exact" | "fast": which denoising schedule the pipeline runs
    context: int  # frames per context window
    overlap: int  # frames shared by neighbouring windows
    steps: int  # denoising steps
    summary: str  # one line for --help, the panel and the server's capabilities


PRESETS: dict[str, Preset] = {
    "exact": Preset("exact", "exact", context=24, overlap=4, steps=25,
                    summary="the official pipeline's numerics (24-frame windows, fp16 reference bank)"),
    "fast": Preset("fast", "fast", context=32, overlap=4, steps=25,
                   summary="same networks and steps, 32-frame windows, batched windows, bf16"),
}


def preset(mode: str) -> Preset:
    """The preset called ``mode``; ``ValueError`` naming the known ones otherwise."""
    try:
        return PRESETS[mode]
    except (KeyError, TypeError):
        raise ValueError(f"expected one of {', '.join(PRESETS)}, got {mode!r}") from None
