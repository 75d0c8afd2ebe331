"""The ``mimo`` command: one subcommand per module, imported only when used.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Keep this table the only list of subcommands.
COMMANDS: dict[str, tuple[str, str]] = {
    "env": ("mimo.env", "print versions of Python, torch, CUDA and the GPU (for bug reports)"),
    "codes": ("mimo.codes.cli", "render a motion clip to structured motion code frames (mp4 or PNGs)"),
    "weights": ("mimo.models.cli", "check, download or make a tiny MIMO weights folder"),
    "generate": ("mimo.pipeline.cli", "character image + motion codes -> video (MIMO or weight-free preview)"),
    "motion": ("mimo.motion.cli", "convert AMASS / BVH / HMR2 motion to clip .npz, resample, describe; export rig"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mimo", description="MIMO character video synthesis tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
