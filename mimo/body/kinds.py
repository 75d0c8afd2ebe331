"""The registry of body model kinds: the one list the CLI, the server's capabilities, the motion
format and the loaders read (docs/ARCHITECTURE.md, "Add a body model").

Each :class:`BodyKind` says how many ``body_pose`` joints its parameters carry, whether it has
finger joints, where its file comes from and which file names are looked for under
:func:`default_models_dir` (``<dir>/<kind>/<name>`` or ``<dir>/<name>``). ``open`` is shipped and
needs no file.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

MODELS_ENV = "MIMO_BODY_MODELS"


@dataclasses.dataclass(frozen=True)
class BodyKind:
    name: str
    body_joints: int  # joints of ``body_pose`` (pelvis excluded)
    hands: bool  # has 15 finger joints per hand (``left_hand_pose``/``right_hand_pose``)
    files: tuple[str, ...] = ()  # file names looked for; () = shipped with the package
    where: str = ""  # where a user gets the licensed file

    @property
    def shipped(self) -> bool:
        return not self.files


BODY_KINDS: dict[str, BodyKind] = {k.name: k for k in (
    BodyKind("open", 21, True),
    BodyKind("smpl", 23, False, ("SMPL_NEUTRAL.pkl", "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl",
                                 "SMPL_NEUTRAL.npz"),
             "SMPL (https://smpl.is.tue.mpg.de, 'SMPL for Python'): SMPL_NEUTRAL.pkl"),
    BodyKind("smplh", 21, True, ("model.npz", "neutral/model.npz", "SMPLH_NEUTRAL.npz", "SMPLH_NEUTRAL.pkl"),
             "SMPL-H (https://mano.is.tue.mpg.de, 'Extended SMPL+H model'): smplh/neutral/model.npz"),
    BodyKind("smplx", 21, True, ("SMPLX_NEUTRAL.npz", "SMPLX_NEUTRAL.pkl"),
             "SMPL-X (https://smpl-x.is.tue.mpg.de): SMPLX_NEUTRAL.npz"),
)}


def default_models_dir() -> Path:
    """Folder searched for licensed model files: ``$MIMO_BODY_MODELS`` or
    ``~/.cache/mimo/body_models``."""
    return Path(os.environ.get(MODELS_ENV, Path.home() / ".cache" / "mimo" / "body_models"))


def body_kind(name: str) -> BodyKind:
    """The registered kind ``name``; ``ValueError`` naming the registered ones otherwise."""
    try:
        return BODY_KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"expected one of {', '.join(BODY_KINDS)}, got {name!r}") from None


def find_model_file(name: str) -> Path:
    """The installed file of kind ``name`` (``FileNotFoundError`` saying where to get it)."""
    kind = body_kind(name)
    root = default_models_dir()
    for file in kind.files:
        for candidate in (root / name / file, root / file):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"no {name} model file found (looked for {list(kind.files)} under {root / name}). These files are "
        f"licensed and not shipped: download {kind.where} and put it in {root / name}/ "
        f"(or set {MODELS_ENV}), or pass the file path to load_body().")


def installed_kinds() -> list[str]:
    """The registered kinds that can load here: shipped ones plus those whose file is installed."""
    found = []
    for name, kind in BODY_KINDS.items():
        if kind.shipped:
            found.append(name)
            continue
        try:
            find_model_file(name)
        except FileNotFoundError:
            continue
        found.append(name)
    return found
