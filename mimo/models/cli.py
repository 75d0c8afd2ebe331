"""``mimo weights check|download|make-tiny DIR``: inspect, fetch or fabricate a weights folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from mimo.cli_errors import CommandFailed, UsageError, int_range

#: what make-tiny writes at the top of a folder: any of them there means the folder is in use
LAYOUT_TOP = ("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth", "motion_module.pth",
              "stable-diffusion-v1-5", "sd-vae-ft-mse", "image_encoder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="coverage table of a weights folder; exit status 1 on any problem")
    check.add_argument("dir", help="weights folder in the official layout")
    down = sub.add_parser("download", help="download the MIMO weights and the prior models (network)")
    down.add_argument("dir", help="destination folder (created; complete files are skipped)")
    down.add_argument("--mimo-repo", default=None, help="Hugging Face repo id of the MIMO weights")
    down.add_argument("--token", default=None, help="Hugging Face token (default: the logged-in one)")
    down.add_argument("--dry-run", action="store_true", help="list what would be downloaded, fetch nothing")
    down.add_argument("--decompose", action="store_true",
                      help="instead, fetch the models of `mimo decompose` (detector, SAM, ViTPose, depth) into DIR")
    down.add_argument("--inpaint-model", default=None, metavar="ID",
                      help="with --decompose: also fetch this diffusers inpainting pipeline (for "
                           "`mimo decompose --inpaint-model ID --models DIR`), e.g. "
                           "stable-diffusion-v1-5/stable-diffusion-inpainting")
    tiny = sub.add_parser("make-tiny", help="write a tiny random weights folder in the official layout")
    tiny.add_argument("dir", help="destination folder")
    tiny.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0)
    tiny.add_argument("--fp16", action="store_true", help="write the files in float16")
    tiny.add_argument("--overwrite", action="store_true", help="replace the files of an existing weights folder")
    for action in (check, down, tiny):
        action.set_defaults(_prog=action.prog)


def _folder(path: str, must_exist: bool) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError("dir", f"{path!r} is a file, expected a weights folder")
    if must_exist and not p.exists():
        raise UsageError("dir", f"folder {path!r} not found (get the weights with `mimo weights download {path}`)")
    return p


def run(args: argparse.Namespace) -> int:
    if args.weights_command == "check":
        from .loading import check_weights

        report = check_weights(_folder(args.dir, must_exist=True))
        print(report.format())
        return 0 if report.ok else 1
    if args.weights_command == "download":
        from .download import (
            DEFAULT_MIMO_REPO,
            DownloadError,
            download_decompose_models,
            download_inpaint_model,
            download_weights,
        )

        if args.inpaint_model is not None and not args.decompose:
            raise UsageError("--inpaint-model", "goes with --decompose (the inpainting model of `mimo decompose`)")
        try:
            if args.decompose:
                download_decompose_models(_folder(args.dir, must_exist=False), token=args.token, dry_run=args.dry_run)
                if args.inpaint_model is not None:
                    download_inpaint_model(_folder(args.dir, must_exist=False), args.inpaint_model, token=args.token,
                                           dry_run=args.dry_run)
                return 0
            download_weights(_folder(args.dir, must_exist=False), mimo_repo=args.mimo_repo or DEFAULT_MIMO_REPO,
                             token=args.token, dry_run=args.dry_run)
        except DownloadError as e:
            raise CommandFailed(str(e)) from e
        return 0
    if args.weights_command == "make-tiny":
        import torch

        from .tiny import make_tiny

        folder = _folder(args.dir, must_exist=False)
        used = [n for n in LAYOUT_TOP if (folder / n).exists()]
        if used and not args.overwrite:
            raise UsageError("dir", f"{args.dir!r} already holds a weights folder ({used[0]}, ...); "
                                    "pass --overwrite to replace its files")
        path = make_tiny(folder, seed=args.seed, dtype=torch.float16 if args.fp16 else torch.float32)
        print(f"wrote a tiny weights folder to {path}")
        return 0
    raise ValueError(f"weights: unknown action {args.weights_command!r}")
