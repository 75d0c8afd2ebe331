"""``mimo weights check|download|make-tiny DIR``: inspect, fetch or fabricate a weights folder."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    p = sub.add_parser("check", help="coverage table of a weights folder; exit status 1 on any problem")
    p.add_argument("dir", help="weights folder in the official layout")
    p = sub.add_parser("download", help="download the MIMO weights and the prior models (network)")
    p.add_argument("dir", help="destination folder (created; complete files are skipped)")
    p.add_argument("--mimo-repo", default=None, help="Hugging Face repo id of the MIMO weights")
    p.add_argument("--token", default=None, help="Hugging Face token (default: the logged-in one)")
    p.add_argument("--dry-run", action="store_true", help="list what would be downloaded, fetch nothing")
    p = sub.add_parser("make-tiny", help="write a tiny random weights folder in the official layout")
    p.add_argument("dir", help="destination folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp16", action="store_true", help="write the files in float16")


def run(args: argparse.Namespace) -> int:
    if args.weights_command == "check":
        from .loading import check_weights

        report = check_weights(args.dir)
        print(report.format())
        return 0 if report.ok else 1
    if args.weights_command == "download":
        from .download import DEFAULT_MIMO_REPO, download_weights

        download_weights(args.dir, mimo_repo=args.mimo_repo or DEFAULT_MIMO_REPO, token=args.token,
                         dry_run=args.dry_run)
        return 0
    if args.weights_command == "make-tiny":
        import torch

        from .tiny import make_tiny

        path = make_tiny(args.dir, seed=args.seed, dtype=torch.float16 if args.fp16 else torch.float32)
        print(f"wrote a tiny weights folder to {path}")
        return 0
    raise ValueError(f"weights: unknown action {args.weights_command!r}")
