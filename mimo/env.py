"""``mimo env``: the versions that matter for a bug report."""
from __future__ import annotations

import argparse
import platform
import sys


def environment_report() -> dict[str, str]:
    """Versions of Python, the pinned libraries, torch's CUDA build and the visible GPUs."""
    import numpy
    import torch

    import mimo

    report = {
        "mimo": mimo.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "cuda (torch build)": str(torch.version.cuda),
        "cuda available": str(torch.cuda.is_available()),
    }
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        report[f"gpu {i}"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
    for name in ("diffusers", "transformers", "zmq", "msgpack"):
        try:
            module = __import__(name)
            report[name] = getattr(module, "__version__", "?")
        except ImportError:
            report[name] = "not installed"
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    for key, value in environment_report().items():
        print(f"{key:>20}: {value}")
    return 0
