"""Add-on preferences (Edit > Preferences > Add-ons > MIMO) and where a job's frames go.

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


class MIMO_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    output_dir: StringProperty(
        name="Output folder (unsaved files)", subtype="DIR_PATH", default="",
        description="Where the frames of an unsaved .blend go (empty: MIMO in your Videos or home "
                    "folder). A saved .blend writes next to itself, in //mimo/")

    def draw(self, context):
        self.layout.prop(self, "output_dir")
        if not self.output_dir:
            self.layout.label(text=f"Empty: {default_output_dir()}")


def preferences() -> "MIMO_AP_preferences | None":
    addon = bpy.context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


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
