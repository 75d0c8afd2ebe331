"""Blender camera -> wire K, R|t, checked against Blender's own projection
(``bpy_extras.object_utils.world_to_camera_view``) to < 0.01 px."""
from __future__ import annotations

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from blender_addon.core import axes
from blender_addon.core import camera as cam

CASES = [  # res_x, res_y, percentage, fit, sensor (w, h), shift (x, y), pixel aspect (x, y), lens
    (1920, 1080, 100, "AUTO", (36, 24), (0.0, 0.0), (1, 1), 50),
    (640, 480, 50, "AUTO", (36, 24), (0.1, -0.05), (1, 1), 35),
    (480, 640, 100, "AUTO", (36, 24), (-0.2, 0.1), (1, 1), 28),
    (800, 600, 75, "VERTICAL", (30, 18), (0.05, 0.15), (1, 1), 85),
    (600, 800, 100, "HORIZONTAL", (22, 30), (0.0, -0.1), (1, 1), 24),
    (1000, 500, 100, "AUTO", (36, 24), (0.03, 0.02), (2, 1), 50),
    (512, 768, 25, "VERTICAL", (36, 24), (0.0, 0.0), (1, 1.5), 60),
]
# Percentages keep the sizes whole here: a render at 33 % truncates 512x768 to 168x253 and
# renders with that aspect, while world_to_camera_view normalises by the full 512x768 frame, so
# the two differ by the rounding (the add-on follows the render).


@pytest.mark.parametrize("case", CASES)
def test_projection_matches_world_to_camera_view(addon, case):
    from blender_addon.bl.camera import camera_track

    rx, ry, pct, fit, (sw, sh), (dx, dy), (ax, ay), lens = case
    scene = bpy.context.scene
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = rx, ry, pct
    r.pixel_aspect_x, r.pixel_aspect_y = ax, ay
    data = bpy.data.cameras.new("cam")
    data.lens, data.sensor_fit, data.sensor_width, data.sensor_height = lens, fit, sw, sh
    data.shift_x, data.shift_y = dx, dy
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    scene.camera = obj
    obj.location = (1.0, -6.0, 1.5)
    obj.rotation_euler = (1.4, 0.1, 0.3)
    obj.scale = (1.0, 2.0, 0.5)  # scale must not change the projection
    bpy.context.view_layer.update()

    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    pts_cam = np.c_[rng.uniform(-1, 1, (40, 2)), -rng.uniform(2, 12, 40)]  # in front (Blender cam looks down -z)
    M = np.array([list(row) for row in obj.matrix_world])
    Mr = M[:3, :3] / np.linalg.norm(M[:3, :3], axis=0)
    world = pts_cam @ Mr.T + M[:3, 3]
    W, H = r.resolution_x * pct // 100, r.resolution_y * pct // 100
    want = np.array([[p.x * W, (1.0 - p.y) * H] for p in (world_to_camera_view(scene, obj, Vector(w)) for w in world)])

    track = camera_track(scene, obj, [scene.frame_current], W, H)
    got = cam.project(track["K"][0], track["R"][0], track["t"][0], axes.points_blender_to_wire(world))
    assert np.abs(got - want).max() < 0.01

    # default output size: the render size centre-cropped to multiples of 8 (same pixels, shifted)
    crop = camera_track(scene, obj, [scene.frame_current])
    got_c = cam.project(crop["K"][0], crop["R"][0], crop["t"][0], axes.points_blender_to_wire(world))
    assert crop["width"] % 8 == 0 and crop["height"] % 8 == 0
    shift = np.array([(W - crop["width"]) / 2, (H - crop["height"]) / 2])
    assert np.abs(got_c + shift - want).max() < 0.01


def test_animated_camera_track(addon):
    from blender_addon.bl.camera import camera_track

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 320, 240
    data = bpy.data.cameras.new("cam")
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    for frame, (x, lens) in {1: (0.0, 30.0), 11: (2.0, 60.0)}.items():
        obj.location = (x, -5.0, 1.0)
        obj.rotation_euler = (np.pi / 2, 0, 0)
        data.lens = lens
        obj.keyframe_insert("location", frame=frame)
        data.keyframe_insert("lens", frame=frame)
    track = camera_track(scene, obj, [1, 6, 11])
    assert track["K"].shape == (3, 3, 3) and (track["width"], track["height"]) == (320, 240)
    assert np.allclose(track["K"][[0, 2], 0, 0], [30 / 36 * 320, 60 / 36 * 320])
    # the camera centre on the wire is -R^T t: Blender (x, -5, 1) -> wire (x, 1, 5)
    centres = -np.einsum("fji,fj->fi", track["R"], track["t"])
    assert np.allclose(centres[[0, 2]], [[0, 1, 5], [2, 1, 5]], atol=1e-5)
    assert 0 < centres[1, 0] < 2
