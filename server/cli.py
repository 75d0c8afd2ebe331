"""The ``mimo-server`` command."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mimo-server", description="MIMO GPU server")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("env", help="print versions of Python, torch, CUDA and the GPU")
    args = parser.parse_args(argv)
    if args.command == "env":
        from mimo.env import environment_report

        for key, value in environment_report().items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
