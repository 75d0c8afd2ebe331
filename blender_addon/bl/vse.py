"""Generated frames -> an image-sequence strip in the scene's video sequencer.

API drift: ``SequenceEditor.sequences`` up to 4.3, ``strips`` from 4.4 (both in 4.4-4.5, only
``strips`` in 5.0); feature-checked, not version-checked.
"""
from __future__ import annotations

import os

import bpy


def strips_of(scene: bpy.types.Scene):
    """The top-level strip collection of the scene's sequencer (created when missing)."""
    ed = scene.sequence_editor or scene.sequence_editor_create()
    return ed.strips if hasattr(ed, "strips") else ed.sequences


def all_strips(scene: bpy.types.Scene):
    ed = scene.sequence_editor
    if ed is None:
        return []
    return list(ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all)


def free_channel(scene: bpy.types.Scene, start: int, end: int) -> int:
    """Lowest channel with no strip overlapping scene frames [start, end]."""
    used = {s.channel for s in all_strips(scene)
            if s.frame_final_start <= end and s.frame_final_end > start}
    ch = 1
    while ch in used:
        ch += 1
    return ch


def add_image_strip(scene: bpy.types.Scene, directory: str, files: list[str], start: int,
                    name: str = "MIMO", hold: int = 1) -> bpy.types.Strip:
    """Add ``files`` (names inside ``directory``, in display order) as one image strip starting at
    scene frame ``start`` in a free channel, each image held ``hold`` scene frames (the scene's
    frame step, so the strip keeps the shot's timing); returns the strip."""
    if not files:
        raise ValueError("files: expected at least one frame file, got none")
    if hold < 1:
        raise ValueError(f"hold: expected >= 1 scene frames per image, got {hold}")
    shown = [f for f in files for _ in range(hold)]
    channel = free_channel(scene, start, start + len(shown) - 1)
    strip = strips_of(scene).new_image(name=name, filepath=os.path.join(directory, shown[0]),
                                       channel=channel, frame_start=start)
    for f in shown[1:]:
        strip.elements.append(f)
    if bpy.data.filepath:  # keep the blend portable: //mimo/<job>/ rather than an absolute path
        strip.directory = bpy.path.relpath(directory).rstrip("/\\") + "/"
    strip.frame_final_duration = len(shown)
    return strip
