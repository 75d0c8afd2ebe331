"""Blender camera objects -> core.camera inputs -> wire ``K``, ``R``, ``t`` per frame."""
from __future__ import annotations

import bpy
import numpy as np

from ..core import camera as cam


def lens_of(cam_obj: bpy.types.Object, scene: bpy.types.Scene) -> cam.BlenderLens:
    """The projection settings of a camera object in a scene (current frame)."""
    d, r = cam_obj.data, scene.render
    return cam.BlenderLens(
        lens=d.lens, sensor_width=d.sensor_width, sensor_height=d.sensor_height,
        sensor_fit=d.sensor_fit, shift_x=d.shift_x, shift_y=d.shift_y,
        resolution_x=r.resolution_x, resolution_y=r.resolution_y,
        resolution_percentage=r.resolution_percentage, pixel_aspect_x=r.pixel_aspect_x,
        pixel_aspect_y=r.pixel_aspect_y, type=d.type)


def matrix_of(obj: bpy.types.Object) -> np.ndarray:
    """The object's world matrix. Shapes: -> (4, 4)"""
    return np.array([list(row) for row in obj.matrix_world])


def camera_track(scene: bpy.types.Scene, cam_obj: bpy.types.Object, frames: list[int],
                 width: int | None = None, height: int | None = None) -> dict:
    """Per-frame OpenCV cameras on the wire (animated lens and transform included).

    Shapes: -> K (F, 3, 3), R (F, 3, 3), t (F, 3); width, height ints
    ``width``/``height`` None: the render size centre-cropped to multiples of 8 (what the server
    accepts); given: the render centre-cropped to that aspect and scaled to that size (x and y
    alike: never squeezed, see ``core.camera.aspect_crop``).
    """
    keep = scene.frame_current
    Ks, Ms = [], []
    for frame in frames:
        scene.frame_set(frame)
        lens = lens_of(cam_obj, scene)
        if width is None or height is None:
            K, w, h = cam.crop_to_multiple(cam.intrinsics(lens), *lens.render_size())
        else:
            K, w, h = cam.crop_and_scale(cam.intrinsics(lens), *lens.render_size(), width, height), width, height
        Ks.append(K)
        Ms.append(matrix_of(cam_obj))
    scene.frame_set(keep)
    R, t = cam.extrinsics(np.stack(Ms))
    return {"K": np.stack(Ks), "R": R, "t": t, "width": int(w), "height": int(h)}
