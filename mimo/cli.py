"""The ``mimo`` command: one subcommand per module, imported only when used.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. Errors are
reported here, one line each (:mod:`mimo.cli_errors`): bad input exits 2, a failed run 1.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from mimo.cli_errors import EXIT_FAILED, EXIT_USAGE, CommandFailed, UsageError, one_line

# name -> (module, one-line help). Keep this table the only list of subcommands.
COMMANDS: dict[str, tuple[str, str]] = {
    "env": ("mimo.env", "print versions of Python, torch, CUDA and the GPU (for bug reports)"),
    "codes": ("mimo.codes.cli", "render a motion clip to structured motion code frames (mp4 or PNGs)"),
    "weights": ("mimo.models.cli", "check, download or make a tiny MIMO weights folder"),
    "generate": ("mimo.pipeline.cli", "character image + motion codes -> video (MIMO or weight-free preview)"),
    "motion": ("mimo.motion.cli", "convert AMASS / BVH / HMR2 motion to clip .npz, resample, describe; export rig"),
    "export": ("mimo.codes.export_cli", "control passes of a motion clip: OpenPose keypoints, mask, depth, normals, SMPL + cameras"),
    "dataset": ("mimo.data.cli", "make a synthetic training dataset, or check a dataset folder"),
    "decompose": ("mimo.decompose.cli", "a video -> fitted motion + camera (Blender), MIMO template, training clip"),
    "train": ("mimo.train.cli", "train or fine-tune MIMO's networks on a dataset (official-layout checkpoints)"),
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``mimo codes: error: --size: ...``) and ``--verbose`` on
    every (sub)command. Subparsers inherit the class."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand's parser must not reset a --verbose given before its name
        self.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="show the traceback of an error")

    def error(self, message: str):
        message = message.removeprefix("argument ")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    import mimo

    parser = Parser(prog="mimo", description="MIMO character video synthesis tools")
    parser.add_argument("--version", action="version", version=f"mimo {mimo.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module, _prog=p.prog)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args, unknown = build_parser().parse_known_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    prog = getattr(args, "_prog", "mimo")
    if unknown:  # argparse would blame the top-level parser: name the subcommand instead
        print(f"{prog}: error: unrecognized arguments: {' '.join(unknown)} (see {prog} --help)", file=sys.stderr)
        return EXIT_USAGE
    verbose = getattr(args, "verbose", False)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UsageError as e:
        return _report(prog, str(e), EXIT_USAGE, verbose)
    except CommandFailed as e:
        return _report(prog, str(e), EXIT_FAILED, verbose)
    except KeyboardInterrupt:
        return _report(prog, "interrupted", 130, verbose)
    except Exception as e:  # a bug, or a failure nobody anticipated: still one line
        hint = "" if verbose else " (unexpected; run with --verbose for the traceback)"
        return _report(prog, f"{type(e).__name__}: {e}{hint}", EXIT_FAILED, verbose)


def _report(prog: str, message: str, code: int, verbose: bool) -> int:
    if verbose:
        traceback.print_exc()
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
