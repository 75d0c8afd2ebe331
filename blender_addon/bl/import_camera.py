"""Import Camera: the camera track of a motion ``.npz`` (``mimo decompose``'s video camera) keyed
onto a Blender camera (``bl.camera.import_camera``), placed like Import Motion places the clip."""
from __future__ import annotations

import bpy
import numpy as np
from bpy.props import BoolProperty, StringProperty

from ..core.errors import AddonError
from . import rig_builder
from .operators import _fail, _OpensFileBrowser, clip_frames, clip_placement, frame_range


class MIMO_OT_import_camera(_OpensFileBrowser, bpy.types.Operator):
    bl_idname = "mimo.import_camera"
    bl_label = "Import Camera"
    bl_description = ("Key the camera track of a motion .npz (what `mimo decompose` writes next to the motion) "
                      "onto the camera \"MIMO Video Camera\" (made or updated), placed like Import Motion "
                      "places the clip on the active body, and use it for the shot")
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    set_resolution: BoolProperty(name="Set Render Size", default=True,
                                 description="Set the scene's render size to the video's (the camera frames "
                                             "the scene like the video only at that size)")

    def execute(self, context):
        from ..vendor import clip as C
        from . import camera as bl_camera

        scene = context.scene
        try:
            _, track = C.load_npz(bpy.path.abspath(self.filepath))
            if track is None:
                raise AddonError(f"{self.filepath}: no camera track in the file (the motion.npz of "
                                 "`mimo decompose` has one)")
            fps = frame_range(scene).fps
            if abs(track.fps - fps) > 1e-5 * fps:
                track = track.resample(fps)
            # the clip's world sits where Import Motion puts it on the active body
            rig = context.active_object
            placement = clip_placement(rig) if rig_builder.is_rig(rig) else None
            name = "MIMO Video Camera"
            target = bpy.data.objects.get(name)
            target = target if target is not None and target.type == "CAMERA" else None
            frames = clip_frames(scene, track.num_frames)
            cam_obj, warnings = bl_camera.import_camera(scene, track, frames, placement, target, name,
                                                        self.set_resolution)
        except (AddonError, ValueError, OSError) as exc:
            return _fail(self, exc)
        scene.camera = cam_obj
        scene.mimo.camera = cam_obj
        scene.frame_end = max(scene.frame_end, frames[-1])
        for w in warnings:
            self.report({"WARNING"}, w)
        fov = np.degrees(2 * np.arctan(0.5 * track.width / track.K[0, 0, 0]))
        self.report({"INFO"}, f"imported a {track.width}x{track.height} camera ({fov:.1f}° wide), "
                              f"{len(frames)} frames at {fps:g} fps onto {cam_obj.name!r}")
        return {"FINISHED"}


classes = (MIMO_OT_import_camera,)
