"""Add-on preferences (Edit > Preferences > Add-ons > MIMO): the server and backend of scenes
that name none, and where the frames of an unsaved file go.

A saved .blend writes its jobs to ``//mimo/<job>/`` next to it. An unsaved one has no such place,
and Blender deletes its session temp folder on exit, so its jobs go to the preference's output
folder — by default ``MIMO`` in the user's Videos folder (the home folder when there is none).
"""
from __future__ import annotations

import os

import bpy
from bpy.props import StringProperty

#: the add-on's module name as Blender registers it ("bl_ext.<repo>.mimo_blender" when installed)
ADDON_ID = __package__.rsplit(".", 1)[0]


def default_output_dir() -> str:
    home = os.path.expanduser("~")
    videos = os.path.join(home, "Videos")
    return os.path.join(videos if os.path.isdir(videos) else home, "MIMO")


DEFAULT_SERVER = "tcp://127.0.0.1:5555"
DEFAULT_BACKEND = "preview"


class MIMO_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    server: StringProperty(name="Server", default=DEFAULT_SERVER,
                           description="ZeroMQ address of the mimo-server, for scenes that name none")
    backend: StringProperty(name="Backend", default=DEFAULT_BACKEND,
                            description="Backend for scenes that name none (preview, mimo, or another "
                                        "one your server offers)")
    output_dir: StringProperty(
        name="Output folder (unsaved files)", subtype="DIR_PATH", default="",
        description="Where the frames of an unsaved .blend go (empty: MIMO in your Videos or home "
                    "folder). A saved .blend writes next to itself, in //mimo/")

    def draw(self, context):
        self.layout.prop(self, "server")
        self.layout.prop(self, "backend")
        self.layout.prop(self, "output_dir")
        if not self.output_dir:
            self.layout.label(text=f"Empty: {default_output_dir()}")


def preferences() -> MIMO_AP_preferences | None:
    addon = bpy.context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def server_of(settings) -> str:
    """The scene's server address, or the preferences' when the scene names none."""
    p = preferences()
    return settings.server.strip() or (p.server.strip() if p is not None else "") or DEFAULT_SERVER


def backend_of(settings) -> str:
    """The scene's backend, or the preferences' default when the scene names none."""
    p = preferences()
    return settings.backend.strip() or (p.backend.strip() if p is not None else "") or DEFAULT_BACKEND


def output_root() -> tuple[str, str]:
    """(folder for new job folders, warning or "").

    ``//mimo`` next to a saved .blend; for an unsaved one the preference's folder, with a warning
    that says where the frames go."""
    if bpy.data.filepath:
        return bpy.path.abspath("//mimo"), ""
    p = preferences()
    root = os.path.abspath(os.path.expanduser(p.output_dir)) if p is not None and p.output_dir.strip() \
        else default_output_dir()
    return root, f"the .blend is not saved: frames go to {root}"


classes = (MIMO_AP_preferences,)
