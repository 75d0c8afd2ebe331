"""``mimo train``: train or fine-tune MIMO's networks on a dataset folder (see mimo/data/layout.py).

    mimo train DATA --out runs/vae   --stage vae    --steps 2000                 # from scratch only
    mimo train DATA --out runs/s1    --stage image  --weights runs/vae/final
    mimo train DATA --out runs/s2    --stage motion --weights runs/s1/final --frames 16
    mimo train DATA --out runs/me    --stage full   --weights OFFICIAL_DIR       # one character
    torchrun --nproc-per-node 4 -m mimo.train.cli DATA --out ...                 # several GPUs

Every checkpoint is a weights folder in the official layout: ``mimo generate --weights
OUT/final`` and ``mimo-server --weights OUT/final`` load it unchanged. Running the same command
again continues from OUT/state.pt.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

from .objective import STAGES
from .trainer import TrainConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="dataset folder (one sub-folder per clip) or one clip folder")
    p.add_argument("--out", required=True, help="run folder: checkpoints, log.jsonl, state.pt")
    p.add_argument("--stage", choices=STAGES, default="image",
                   help="what trains: vae (the autoencoder, for models trained from scratch), image "
                        "(stage 1, single frames), motion (stage 2, motion modules on windows), full "
                        "(fine-tuning --weights)")
    p.add_argument("--weights", help="official-layout weights folder to start from (default: random "
                                     "tiny networks, training from scratch)")
    p.add_argument("--frames", type=int, help="frames per item (default 1 for vae/image, 16 otherwise)")
    p.add_argument("--size", type=int, default=64, help="square training size in pixels (default 64)")
    p.add_argument("--batch", type=int, default=4, help="items per step and GPU (default 4)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    p.add_argument("--drop", type=float, default=0.1,
                   help="probability of dropping the CLIP token and reference (guidance training)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (less memory)")
    p.add_argument("--adam8bit", action="store_true", help="8-bit AdamW (bitsandbytes, CUDA)")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay, e.g. 0.999 (default off)")
    p.add_argument("--lora", type=int, default=0, metavar="RANK",
                   help="train LoRA adapters of this rank on the attention projections instead of the "
                        "weights (merged into every checkpoint; needs peft)")
    p.add_argument("--train-image-encoder", action="store_true",
                   help="train the CLIP tower too (stage image, when training from scratch)")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (default: end only)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--validate-every", type=int, default=0)
    p.add_argument("--val-data", help="dataset folder for validation generations")
    p.add_argument("--val-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--preload", action="store_true",
                   help="read the whole dataset into device memory once and prepare each batch there "
                        "(the same items, much faster for a small dataset; clips of one frame size)")
    p.add_argument("--device", help="torch device (default: cuda if available)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop and save after this many minutes of training (default: no limit)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Check the numbers and paths before any work (one line naming the argument)."""
    from pathlib import Path

    from mimo.cli_errors import UsageError, check_device

    positive = {"size": args.size, "batch": args.batch, "steps": args.steps, "log_every": args.log_every,
                "val_steps": args.val_steps}
    for name, value in positive.items():
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')}", f"expected at least 1, got {value}")
    if args.size % 8:
        raise UsageError("--size", f"expected a multiple of 8, got {args.size}")
    if args.frames is not None and not 1 <= args.frames <= 32:
        raise UsageError("--frames", f"expected 1..32, got {args.frames}")
    for name, ok in (("--lr", 0 < args.lr < math.inf), ("--drop", 0 <= args.drop <= 1),
                     ("--ema", 0 <= args.ema < 1), ("--max-minutes", 0 <= args.max_minutes < math.inf)):
        if not ok:
            raise UsageError(name, f"out of range: {getattr(args, name[2:].replace('-', '_'))}")
    for name in ("warmup", "save_every", "validate_every", "workers"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')}", f"expected at least 0, got {getattr(args, name)}")
    if not 0 <= args.seed < 2**32:
        raise UsageError("--seed", f"expected 0..{2**32 - 1}, got {args.seed}")
    if args.stage == "full" and not args.weights:
        raise UsageError("--stage", "full fine-tunes existing weights: give --weights (to train from "
                                    "scratch, run the vae, image and motion stages in turn)")
    if args.lora < 0:
        raise UsageError("--lora", f"expected a rank >= 1 (or 0: off), got {args.lora}")
    if args.lora and args.stage == "vae":
        raise UsageError("--lora", "works with the image, motion and full stages, not vae")
    if args.validate_every and not args.val_data:
        raise UsageError("--validate-every", "needs --val-data")
    if args.val_data and not args.validate_every:
        raise UsageError("--val-data", "needs --validate-every N (else it is never used)")
    for name in ("data", "val_data", "weights"):
        value = getattr(args, name)
        if value is not None and not Path(value).is_dir():
            raise UsageError("data" if name == "data" else f"--{name.replace('_', '-')}",
                             f"{value} is not a folder")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError("--out", f"{args.out} exists and is not a folder")
    if Path(args.out).resolve().is_relative_to(Path(args.data).resolve()):
        raise UsageError("--out", f"{args.out} is the dataset folder {args.data} or inside it; give "
                                  "a folder outside it")
    args.device = check_device("--device", args.device) if args.device else None
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})


def run(args: argparse.Namespace) -> int:
    from mimo.cli_errors import CommandFailed, UsageError
    from mimo.data.layout import ClipError
    from mimo.errors import FieldError

    from .trainer import train

    cfg = config_from_args(args)
    try:
        final = train(cfg, log=lambda text: print(text, flush=True))
    except FieldError as exc:  # --out, --weights, --val-data found wrong before any work
        raise UsageError(exc.field, exc.message) from None
    except ClipError as exc:
        raise UsageError("data", str(exc)) from None
    except (ValueError, FloatingPointError) as exc:  # a run folder of another stage, a NaN loss, ...
        raise CommandFailed(str(exc)) from None
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun every process gets here
        print(f"weights (official layout): {final}")
    return 0


if __name__ == "__main__":  # torchrun -m mimo.train.cli ... (one process per GPU)
    from mimo.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
