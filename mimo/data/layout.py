"""One folder per training clip, and a dataset = a folder of clip folders.

Clip folder (``DATASET/<clip>/``)::

    meta.json        {"format": "mimo-clip", "version": 1, "fps": 30.0, "num_frames": F,
                      "width": W, "height": H, "body_model": "open", "source": "...",
                      "licence": "...", "characters": ["character_0.png", ...]}
    frames.npy       (F, H, W, 3) uint8  the ground-truth video of the character
    codes.npy        (F, H, W, 3) uint8  structured motion codes of the same camera (black background)
    scene.npy        (F, H, W, 3) uint8  the scene plate: everything but the character
    occlusion.npy    (F, H, W) uint8     alpha of scene pixels in front of the character (optional)
    character_K.png  reference images of the character (optional: then a frame is the reference)
    motion.npz       the motion clip and camera in ``mimo motion`` format (optional, provenance)

Arrays are plain ``.npy`` (read memory-mapped, written byte-identically for the same content).
An official template folder (``vid.mp4``, ``sdc.mp4``, ``bk.mp4``, optional ``occ.mp4``) also
reads as a clip: ``vid`` are the frames, ``sdc`` the codes, ``bk`` the scene, ``occ`` the occlusion.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

FORMAT = "mimo-clip"
VERSION = 1
ARRAYS = {"frames": 4, "codes": 4, "scene": 4, "occlusion": 3}


class ClipError(ValueError):
    """A clip folder is broken; the message names the file and, where it applies, the frame."""


@dataclasses.dataclass
class Clip:
    """One training clip in memory (arrays may be read-only memory maps).

    Shapes:
        frames, codes, scene (F, H, W, 3) uint8; occlusion (F, H, W) uint8 or None;
        characters: list of (Hc, Wc, 3) uint8
    """

    frames: np.ndarray
    codes: np.ndarray
    scene: np.ndarray
    occlusion: np.ndarray | None = None
    characters: list[np.ndarray] = dataclasses.field(default_factory=list)
    meta: dict = dataclasses.field(default_factory=dict)
    path: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def write_clip(folder: str | Path, clip: Clip, motion_npz: bytes | None = None) -> Path:
    """Write ``clip`` as a clip folder (created; existing files are replaced). Returns the folder."""
    check_clip(clip)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    F, H, W = clip.frames.shape[:3]
    names = []
    for k, image in enumerate(clip.characters):
        from PIL import Image

        name = f"character_{k}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(folder / name, optimize=False)
        names.append(name)
    for name in ARRAYS:
        a = getattr(clip, name)
        if a is not None:
            np.save(folder / f"{name}.npy", np.ascontiguousarray(a), allow_pickle=False)
    if motion_npz is not None:
        (folder / "motion.npz").write_bytes(motion_npz)
    meta = {"fps": 30.0, "source": "", "licence": "", "body_model": "open", **clip.meta,
            "format": FORMAT, "version": VERSION, "num_frames": int(F), "width": int(W),
            "height": int(H), "characters": names}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return folder


def check_clip(clip: Clip, where: str = "clip", suffix: str = "") -> None:
    """Raise :class:`ClipError` naming the array (``where/name`` + ``suffix``, e.g. ``.npy`` for
    the file it was read from) that has the wrong type or shape."""
    if not isinstance(clip.frames, np.ndarray) or clip.frames.ndim != 4 or clip.frames.shape[-1] != 3:
        raise ClipError(f"{where}/frames{suffix}: expected (F, H, W, 3) uint8, got "
                        f"{getattr(clip.frames, 'shape', type(clip.frames).__name__)}")
    F, H, W = clip.frames.shape[:3]
    if F < 1:
        raise ClipError(f"{where}/frames{suffix}: no frames")
    for name, shape in (("frames", (F, H, W, 3)), ("codes", (F, H, W, 3)), ("scene", (F, H, W, 3)),
                        ("occlusion", (F, H, W))):
        a = getattr(clip, name)
        if a is None and name == "occlusion":
            continue
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.shape != shape:
            raise ClipError(f"{where}/{name}{suffix}: expected {shape} uint8 (like frames), got "
                            f"{getattr(a, 'shape', type(a).__name__)} {getattr(a, 'dtype', '')}".rstrip())
    for k, image in enumerate(clip.characters):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3 and min(image.shape[:2]) >= 8):
            raise ClipError(f"{where}/character_{k}.png: expected an RGB image of at least 8x8 pixels")


def read_clip(folder: str | Path, mmap: bool = True) -> Clip:
    """Read a clip folder (or an official template folder). Raises :class:`ClipError` naming the
    file that is missing or wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipError(f"{folder}: not a folder")
    if (folder / "sdc.mp4").is_file() and not (folder / "meta.json").is_file():
        return _read_template(folder)
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ClipError(f"{meta_path}: missing (every clip folder has meta.json)") from None
    except (OSError, ValueError) as exc:
        raise ClipError(f"{meta_path}: not readable JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ClipError(f"{meta_path}: expected \"format\": \"{FORMAT}\"")
    _check_meta(meta, meta_path)
    arrays = {}
    for name in ARRAYS:
        path = folder / f"{name}.npy"
        if not path.is_file():
            if name == "occlusion":
                arrays[name] = None
                continue
            raise ClipError(f"{path}: missing")
        try:
            arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ClipError(f"{path}: not a readable .npy array ({exc})") from None
    characters = [_read_png(folder / name) for name in meta.get("characters", [])]
    clip = Clip(characters=characters, meta=meta, path=str(folder), **arrays)
    check_clip(clip, str(folder), ".npy")
    if meta.get("num_frames") not in (None, clip.num_frames):
        raise ClipError(f"{meta_path}: num_frames {meta.get('num_frames')} but frames.npy has "
                        f"{clip.num_frames}")
    return clip


def _check_meta(meta: dict, path: Path) -> None:
    """The types of meta.json's fields (a wrong one raises :class:`ClipError` naming it)."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)

    if "fps" in meta and not (number(meta["fps"]) and meta["fps"] > 0):
        raise ClipError(f"{path}: \"fps\" must be a positive number, got {meta['fps']!r}")
    for key in ("num_frames", "width", "height"):
        v = meta.get(key)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ClipError(f"{path}: \"{key}\" must be a positive integer, got {v!r}")
    names = meta.get("characters", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ClipError(f"{path}: \"characters\" must be a list of file names, got {names!r}")
    for name in names:  # files of this clip folder only: a clip must not read images elsewhere
        if not name or Path(name).name != name or name in (".", ".."):
            raise ClipError(f"{path}: \"characters\" lists {name!r}; expected a file name inside "
                            "the clip folder")


def looks_like_clip(folder: Path) -> bool:
    """Whether ``folder`` holds any file of a clip (so a clip that lost its meta.json is
    reported as broken instead of skipped)."""
    names = ("meta.json", "sdc.mp4", *(f"{a}.npy" for a in ARRAYS))
    return any((folder / n).is_file() for n in names)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB")).copy()
    except FileNotFoundError:
        raise ClipError(f"{path}: missing (listed in meta.json characters)") from None
    except Exception as exc:
        raise ClipError(f"{path}: not a readable image ({type(exc).__name__})") from None


def _read_template(folder: Path) -> Clip:
    from mimo.pipeline.template import load_template

    try:
        t = load_template(folder, max_frames=10**9)
    except ValueError as exc:
        raise ClipError(str(exc)) from None
    clip = Clip(frames=t.source, codes=t.codes, scene=t.scene, occlusion=t.occlusion,
                meta={"fps": t.fps, "source": "official template layout"}, path=str(folder))
    check_clip(clip, str(folder))
    return clip


def list_clips(dataset: str | Path) -> list[Path]:
    """Clip folders of a dataset folder, sorted by name (a folder that is itself a clip: [it]).
    Every sub-folder holding a clip file counts, so a broken clip is reported by ``read_clip``,
    never skipped."""
    root = Path(dataset)
    if not root.is_dir():
        raise ClipError(f"{root}: dataset folder not found")
    if looks_like_clip(root):
        return [root]
    clips = sorted(p for p in root.iterdir() if p.is_dir() and looks_like_clip(p))
    if not clips:
        raise ClipError(f"{root}: no clip folders (each has meta.json, or sdc.mp4 for a template)")
    return clips
