"""The four ``transformers`` models of the decomposition, loaded with their own
``from_pretrained`` (by Hugging Face id from the local cache, or from a folder), never downloaded
here: ``mimo weights download DIR --decompose`` fetches them for a user who asks.

=========== ============================================ ==========================================
stage       default id                                    classes
=========== ============================================ ==========================================
detector    ``PekingU/rtdetr_r50vd_coco_o365``            AutoModelForObjectDetection (RT-DETR, DETR)
segmenter   ``facebook/sam-vit-base``                     SamModel + SamProcessor (box prompts)
pose        ``usyd-community/vitpose-base-simple``        VitPoseForPoseEstimation (COCO-17)
depth       ``depth-anything/Depth-Anything-V2-Small-hf`` AutoModelForDepthEstimation (Depth
                                                          Anything, DPT; relative or metric)
=========== ============================================ ==========================================
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

DEFAULTS = {
    "detector": "PekingU/rtdetr_r50vd_coco_o365",
    "segmenter": "facebook/sam-vit-base",
    "pose": "usyd-community/vitpose-base-simple",
    "depth": "depth-anything/Depth-Anything-V2-Small-hf",
}
FLAGS = {"detector": "--detector", "segmenter": "--segmenter", "pose": "--pose", "depth": "--depth"}


class ModelMissing(ValueError):
    """A model is neither a folder nor in the local Hugging Face cache (message names the flag
    and the command that fetches it)."""

    def __init__(self, stage: str, spec: str, reason: str = ""):
        self.stage, self.spec = stage, spec
        why = f" ({reason})" if reason else ""
        super().__init__(f"{FLAGS[stage]}: no {stage} model {spec!r} here: not a model folder and not in "
                         f"the Hugging Face cache{why}; fetch the defaults with `mimo weights download DIR "
                         f"--decompose` and pass --models DIR, or give a model folder")


@dataclasses.dataclass
class Loaded:
    """A model and its processor, in eval mode on ``device``."""

    stage: str
    model: object
    processor: object
    device: str


def resolve(stage: str, spec: str | None, models_dir: str | os.PathLike | None = None) -> str:
    """A model folder or a hub id: ``spec`` if given (a folder path or an id), else the stage's
    default id, found as ``models_dir/<id with / -> -->`` when that folder exists (``stage``
    "inpaint", which has no default, needs ``spec``)."""
    spec = spec or DEFAULTS[stage]
    if models_dir is not None:
        local = Path(models_dir) / folder_name(spec)
        if local.is_dir():
            return str(local)
    return spec


def folder_name(repo_id: str) -> str:
    """Where ``mimo weights download --decompose`` puts a repo inside its folder."""
    return repo_id.replace("/", "--")


def missing_reason(spec: str, marker: str) -> str | None:
    """Why ``spec`` is not a usable local model (None when it is): a folder holding ``marker``
    (``config.json``, ``model_index.json``), or a hub id whose ``marker`` is in the local Hugging
    Face cache (nothing is loaded). The reason is "" when it is simply neither."""
    path = Path(spec)
    if path.exists():
        return None if (path / marker).is_file() else f"the folder has no {marker}"
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(spec, marker)
    except ValueError:  # not a valid repo id
        found = None
    return None if isinstance(found, str) else ""


def check(stage: str, spec: str) -> None:
    """Raise :class:`ModelMissing` unless ``spec`` is a model folder (with ``config.json``) or a
    hub id whose ``config.json`` is in the local Hugging Face cache (nothing is loaded)."""
    reason = missing_reason(spec, "config.json")
    if reason is not None:
        raise ModelMissing(stage, spec, reason)


def load(stage: str, spec: str, device: str = "cpu") -> Loaded:
    """Load one stage's model with ``from_pretrained`` (``local_files_only``: no network).

    Raises :class:`ModelMissing` when ``spec`` is neither a folder nor cached.
    """
    import transformers as tf

    classes = {
        "detector": (tf.AutoModelForObjectDetection, tf.AutoImageProcessor),
        "segmenter": (tf.SamModel, tf.SamProcessor),
        "pose": (tf.VitPoseForPoseEstimation, tf.AutoImageProcessor),
        "depth": (tf.AutoModelForDepthEstimation, tf.AutoImageProcessor),
    }[stage]
    check(stage, spec)
    try:
        model = classes[0].from_pretrained(spec, local_files_only=True)
        processor = classes[1].from_pretrained(spec, local_files_only=True)
    except OSError as e:
        raise ModelMissing(stage, spec, str(e).splitlines()[0][:160]) from None
    return Loaded(stage, model.to(device).eval(), processor, device)
