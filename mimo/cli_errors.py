"""How every ``mimo`` command reports bad input: one line, naming the argument, exit status 2.

    mimo codes: error: --motion: 'x.png' is a PNG image, expected a motion clip .npz (mimo motion convert makes one)

Subcommands raise :class:`UsageError` (bad input: the argument and what was wrong; exit 2) or
:class:`CommandFailed` (the input was fine but the work failed: network, disk; exit 1).
:func:`mimo.cli.main` prints either as one line; ``--verbose`` adds the traceback. Any other
exception is a bug: one line with its type and "run with --verbose for the traceback", exit 1.

The helpers check inputs before any work starts: :func:`input_file` (exists, is a file, and what
kind of file it is by its first bytes), :func:`argument` (turns a reader's ``ValueError`` into a
``UsageError`` for that argument), :func:`output_path` (writable, extension, ``--overwrite``), and
the argparse ``type=`` functions :func:`size_type`, :func:`positive_float`, :func:`frames_type`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(ValueError):
    """Bad input on the command line: ``arg`` is the option as typed (``--motion``, ``input``)."""

    def __init__(self, arg: str, message: str):
        super().__init__(f"{arg}: {message}")
        self.arg = arg
        self.message = message


class CommandFailed(RuntimeError):
    """The inputs were valid but the work could not be done (offline, disk full, ...): exit 1."""


def one_line(text: str) -> str:
    """Collapse a multi-line message to one line (``; `` between the original lines)."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


# ---------------------------------------------------------------- what kind of file is this?

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image, AVI or WAV)"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"%PDF", "a PDF document"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
)


def sniff(path: str | os.PathLike) -> str:
    """A short description of a file from its first bytes: 'a PNG image', 'a zip archive',
    'a NumPy .npz archive', 'an MP4/MOV video', 'a pickle', 'a BVH file', 'text', 'binary data'."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(512)
    if not head:
        return "an empty file"
    if head[4:8] == b"ftyp":
        return "an MP4/MOV video"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "a pickle"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            if what == "a zip archive":
                return _zip_kind(p)
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    if text.lstrip().upper().startswith("HIERARCHY"):
        return "a BVH file"
    return "text"


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return "a damaged zip archive (truncated or corrupt)"
    if names and all(n.endswith(".npy") for n in names):
        return "a NumPy .npz archive"
    return "a zip archive"


def input_file(arg: str, path: str | os.PathLike | None, expect: str, kinds: tuple[str, ...] = ()) -> Path:
    """Check that ``path`` (given as ``arg``) is a readable file, of one of ``kinds`` when given
    (descriptions as :func:`sniff` returns them); ``expect`` says what was wanted, e.g.
    'a motion clip .npz'. Returns the path."""
    if path is None:
        raise UsageError(arg, f"expected {expect}")
    p = Path(path)
    if not p.exists():
        raise UsageError(arg, f"{str(p)!r} not found (expected {expect})")
    if p.is_dir():
        raise UsageError(arg, f"{str(p)!r} is a folder, expected {expect}")
    if not os.access(p, os.R_OK):
        raise UsageError(arg, f"{str(p)!r} is not readable")
    if kinds:
        what = sniff(p)
        if what not in kinds:
            raise UsageError(arg, f"{str(p)!r} is {what}, expected {expect}")
    return p


NPZ = ("a NumPy .npz archive",)
#: extensions that name a file, never a folder of frames
FILE_SUFFIXES = (".npz", ".npy", ".json", ".txt", ".pkl", ".pth", ".bvh", ".zip", ".blend")


@contextlib.contextmanager
def argument(arg: str) -> Iterator[None]:
    """Turn what a reader raises about the file or value of ``arg`` into a one-line UsageError."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError) as e:
        message = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
        if message.startswith(("Cannot load file containing pickled data", "Object arrays cannot be loaded")):
            message = "holds pickled Python objects, which mimo never loads (expected plain numeric arrays)"
        if isinstance(e, zlib.error):
            message = f"damaged compressed data ({e})"
        if isinstance(e, OSError) and e.filename is not None:
            message = f"{e.strerror or e}: {e.filename!r}"
        name = arg.lstrip("-")
        for prefix in (name, name.replace("-", "_"), "path"):  # readers name their own parameter
            message = message.removeprefix(f"{prefix}: ")
        raise UsageError(arg, one_line(message)) from e


def output_path(arg: str, path: str | os.PathLike, overwrite: bool,
                suffixes: tuple[str, ...] = (".mp4", ""), size: tuple[int, int] | None = None) -> Path:
    """Check an output before any work: its extension (``""`` = a folder of PNG frames), that its
    folder can be written, that an existing file is only replaced with ``--overwrite``, and for an
    H.264 mp4 that ``size`` (W, H) is even. Returns the path."""
    from mimo.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    p = Path(path)
    suffix = p.suffix.lower()
    folder_ok = "" in suffixes
    if folder_ok and suffix not in suffixes and suffix not in FILE_SUFFIXES + IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        suffix = ""  # "frames.v2": a folder with a dot in its name
    if suffix not in suffixes and not (folder_ok and p.is_dir()):
        wanted = " or ".join(f"a {s} file" if s else "a folder (PNG frames)" for s in suffixes)
        raise UsageError(arg, f"expected {wanted}, got {str(p)!r}")
    is_folder = folder_ok and (suffix == "" or p.is_dir())
    if is_folder:
        if p.exists() and not p.is_dir():
            raise UsageError(arg, f"{str(p)!r} exists and is not a folder")
        clash = [c.name for c in p.glob("frame_*.png")] if p.is_dir() else []
        if clash and not overwrite:
            raise UsageError(arg, f"{str(p)!r} already holds frames ({sorted(clash)[0]}, ...); "
                                  "pass --overwrite to replace them")
    else:
        if p.is_dir():
            raise UsageError(arg, f"{str(p)!r} is a folder, expected a {suffix} file")
        if p.exists() and not overwrite:
            raise UsageError(arg, f"{str(p)!r} exists (pass --overwrite to replace it)")
    _check_writable(arg, p if is_folder and p.exists() else p.parent)
    if size is not None and suffix == ".mp4" and (size[0] % 2 or size[1] % 2):
        raise UsageError(arg, f"an H.264 mp4 needs an even width and height, got {size[0]}x{size[1]} "
                              "(choose an even --size, or write PNG frames to a folder)")
    return p


def _check_writable(arg: str, folder: Path) -> None:
    """Create and remove a file in ``folder`` (or the nearest folder above it that exists, where
    the missing ones would be created): permission bits alone do not tell (root, /proc, a
    read-only mount)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(arg, f"cannot write there: {str(folder)!r} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mimo-write-test-"):
            pass
    except OSError as e:
        raise UsageError(arg, f"cannot write to {str(folder)!r} ({e.strerror or e})") from None


def save_frames(arg: str, out: str | os.PathLike, frames, fps: float, overwrite: bool) -> list[Path]:
    """``mimo.video.write_frames``; when that fails after all (disk full, the folder made read-only
    meanwhile), save the frames as PNGs next to ``out``, else in a temporary folder, and raise
    :class:`CommandFailed` saying where they are."""
    from mimo.video import write_frames

    out = Path(out)
    try:
        return write_frames(out, frames, fps=fps, overwrite=overwrite)
    except (OSError, ValueError) as e:
        error = e.strerror if isinstance(e, OSError) and e.strerror else one_line(str(e)).split("; FFMPEG")[0]
    for folder in (out.with_name(out.stem + "_frames"), None):
        try:
            folder = folder or Path(tempfile.mkdtemp(prefix="mimo-frames-"))
            if folder.exists() and any(folder.iterdir()):
                continue
            write_frames(folder, frames, fps=fps)
        except OSError:
            continue
        raise CommandFailed(f"{arg}: writing {str(out)!r} failed ({error}); the {len(frames)} frames "
                            f"are saved as PNGs in {str(folder)!r}")
    raise CommandFailed(f"{arg}: writing {str(out)!r} failed ({error}), and the frames could not be "
                        "saved anywhere else")


# ---------------------------------------------------------------- argparse type= functions

def size_type(text: str, minimum: int = 8, maximum: int = 8192) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (W, H), each in minimum..maximum."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 784x784, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (minimum <= w <= maximum and minimum <= h <= maximum):
        raise argparse.ArgumentTypeError(f"expected width and height in {minimum}..{maximum}, got {text!r}")
    return w, h


def positive_float(text: str, maximum: float = 1000.0) -> float:
    """A finite number in (0, maximum]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 < v <= maximum):  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a number in (0, {maximum:g}], got {text!r}")
    return v


def int_range(lo: int, hi: int):
    """An argparse type for an integer in lo..hi."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got {text!r}")
        return v
    parse.__name__ = "integer"
    return parse


def frames_type(text: str) -> slice:
    """``START:END[:STEP]`` (Python slice rules, END exclusive, either end may be empty) -> slice."""
    m = re.fullmatch(r"\s*(-?\d*)\s*:\s*(-?\d*)\s*(?::\s*(\d*)\s*)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected START:END[:STEP] such as 0:48 or 10::2, got {text!r}")
    start, end, step = (int(g) if g else None for g in m.groups())
    if step is not None and step < 1:
        raise argparse.ArgumentTypeError(f"expected a STEP of at least 1, got {text!r}")
    return slice(start, end, step)


def check_device(arg: str, device: str | None) -> str:
    """``--device`` (None: cuda when available, else cpu) checked against this machine."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(arg, f"expected cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(arg, f"{device!r} asked for, but torch sees no CUDA GPU here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(arg, f"{device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device
