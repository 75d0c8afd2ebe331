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


def import_camera(scene: bpy.types.Scene, track, frames: list[int], placement: np.ndarray | None = None,
                  target: bpy.types.Object | None = None, name: str = "MIMO Video Camera",
                  set_resolution: bool = True) -> tuple[bpy.types.Object, list[str]]:
    """Key a wire camera track (the vendored ``CameraTrack``: OpenCV ``K``, ``R``, ``t`` per frame)
    onto a Blender camera object at scene ``frames``: transform from ``core.camera.matrix_world_of``,
    lens and shift from ``core.camera.lens_of_intrinsics`` (keyed only where they change).

    ``placement`` (4, 4): where the track's world sits in Blender's (a body's Import Motion
    placement; None: Blender's world). ``target``: a camera object to update (its animation is
    replaced); None makes a new one. ``set_resolution``: the scene's render size becomes the
    track's (the projection equals the track's only at that size); otherwise a differing size is
    reported in the returned warnings.

    Shapes: track K (F, 3, 3), R (F, 3, 3), t (F, 3); len(frames) == F
    """
    from mathutils import Matrix

    F = track.num_frames
    if len(frames) != F:
        raise ValueError(f"frames: expected {F} (one per camera frame), got {len(frames)}")
    lenses = [cam.lens_of_intrinsics(track.K[f], track.width, track.height) for f in range(F)]
    aspects = np.array([lz.pixel_aspect_y / lz.pixel_aspect_x for lz in lenses])
    if np.ptp(aspects) > 1e-6 * aspects[0]:
        raise ValueError("camera K: fx/fy changes over the track; Blender's pixel aspect is one per scene")
    mats = cam.matrix_world_of(track.R, track.t)
    if placement is not None:
        mats = np.asarray(placement, dtype=np.float64) @ mats
    if target is None:
        target = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        scene.collection.objects.link(target)
    elif target.type != "CAMERA":
        raise ValueError(f"target: expected a camera object, got {target.type.lower()} {target.name!r}")
    target.animation_data_clear()
    target.data.animation_data_clear()
    d = target.data
    d.type, d.sensor_fit, d.sensor_width = "PERSP", "HORIZONTAL", lenses[0].sensor_width
    d.sensor_height = lenses[0].sensor_height
    target.rotation_mode = "XYZ"
    target.scale = (1.0, 1.0, 1.0)
    target.parent = None
    euler = None
    for f, frame in enumerate(frames):
        m = Matrix([list(r) for r in mats[f]])
        loc, rot, _ = m.decompose()
        euler = rot.to_euler("XYZ", euler) if euler is not None else rot.to_euler("XYZ")
        target.location, target.rotation_euler = loc, euler
        target.keyframe_insert("location", frame=frame)
        target.keyframe_insert("rotation_euler", frame=frame)
    for attr in ("lens", "shift_x", "shift_y"):
        values = [getattr(lz, attr) for lz in lenses]
        setattr(d, attr, values[0])
        if max(values) - min(values) > 1e-9 * max(1.0, abs(values[0])):
            for frame, v in zip(frames, values):
                setattr(d, attr, v)
                d.keyframe_insert(attr, frame=frame)
    r, first = scene.render, lenses[0]
    warnings = []
    size = (first.resolution_x, first.resolution_y, 100, first.pixel_aspect_x, first.pixel_aspect_y)
    now = (r.resolution_x, r.resolution_y, r.resolution_percentage, r.pixel_aspect_x, r.pixel_aspect_y)
    if set_resolution:
        r.resolution_x, r.resolution_y, r.resolution_percentage = size[:3]
        r.pixel_aspect_x, r.pixel_aspect_y = size[3:]
    elif tuple(now) != size:
        w, h = lens_of(target, scene).render_size()
        warnings.append(f"the render size is {w}x{h}, the video's {track.width}x{track.height}: the camera "
                        f"matches the video's framing only at {track.width}x{track.height} (100 %)")
    return target, warnings
