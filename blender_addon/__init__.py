"""MIMO Character Video — Blender extension (manifest: blender_manifest.toml).

Registration only; the Blender layer lives in ``bl/``, everything testable without Blender in
``core/`` (importable without bpy, so this file imports ``bl`` only when Blender registers it).
Heavy modules (zmq, the protocol) are imported inside operators when first used.
"""
from __future__ import annotations


def _classes() -> tuple:
    from .bl import dataset_ui, import_camera, operators, panel, prefs, props

    return (*props.classes, *prefs.classes, *operators.classes, *import_camera.classes, *panel.classes,
            *dataset_ui.classes)


def register() -> None:
    import bpy

    from .bl import props, timers

    for cls in _classes():
        bpy.utils.register_class(cls)
    props.attach()
    timers.attach()


def unregister() -> None:
    import bpy

    from .bl import props, timers

    timers.stop_all()
    props.detach()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
