"""Scene plate and occlusion mask rendered by Blender (Workbench) for the request's layers."""
from __future__ import annotations

import bpy
import numpy as np

from blender_addon.core import axes
from blender_addon.core import camera as cam


def _scene_with_body_and_box(box_y):
    from blender_addon.bl.camera import camera_track

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 84, 100, 100
    assert bpy.ops.mimo.add_body() == {"FINISHED"}  # feet on the floor: pelvis ~1 m up
    rig = bpy.context.active_object
    assert 0.9 < rig.location.z < 1.1
    bpy.ops.mimo.add_camera()  # at (0, -4, 1) looking along +Y
    bpy.ops.mesh.primitive_cube_add(size=0.3, location=(0.15, box_y, 1.2))
    box = bpy.context.active_object
    scene.frame_start = scene.frame_end = 1
    track = camera_track(scene, scene.camera, [1])
    return scene, rig, box, track


def _box_bbox(box, track):
    M = np.array([list(r) for r in box.matrix_world])
    corners = np.array([list(v.co) for v in box.data.vertices]) @ M[:3, :3].T + M[:3, 3]
    uv = cam.project(track["K"][0], track["R"][0], track["t"][0], axes.points_blender_to_wire(corners))
    return uv.min(axis=0), uv.max(axis=0)


def test_occlusion_mask_is_where_the_box_hides_the_body(addon):
    from blender_addon.bl.layers import render_layers

    scene, rig, box, track = _scene_with_body_and_box(box_y=-1.0)  # between camera and body
    W, H = track["width"], track["height"]
    assert (W, H) == (80, 96)
    engine, light = scene.render.engine, scene.display.shading.light
    scene.render.filepath = "//out/"
    plate, occ = render_layers(scene, [rig], [1], W, H, crop=True, plate=True, occlusion=True)
    assert plate.shape == (1, H, W, 3) and plate.dtype == np.uint8
    assert occ.shape == (1, H, W) and set(np.unique(occ)) <= {0, 255}
    ys, xs = np.nonzero(occ[0])
    assert len(xs) > 20
    lo, hi = _box_bbox(box, track)
    assert xs.min() >= lo[0] - 1 and xs.max() + 1 <= hi[0] + 1
    assert ys.min() >= lo[1] - 1 and ys.max() + 1 <= hi[1] + 1
    # the plate has no body: the pixel at the body's belly (left of the box) is background
    belly = cam.project(track["K"][0], track["R"][0], track["t"][0],
                        axes.points_blender_to_wire(np.array([[-0.12, -0.1, rig.location.z]])))[0]
    u, v = int(belly[0]), int(belly[1])
    assert np.abs(plate[0, v, u].astype(int) - plate[0, 2, 2].astype(int)).max() <= 2

    box.location.y = 1.0  # behind the body: nothing is occluded
    _, occ2 = render_layers(scene, [rig], [1], W, H, crop=True, plate=False, occlusion=True)
    assert occ2[0].max() == 0
    # every setting is restored
    assert scene.render.engine == engine and not rig.hide_render and tuple(box.color) == (1, 1, 1, 1)
    assert scene.display.shading.light == light and scene.render.filepath == "//out/"


def test_generate_request_carries_the_layers(addon, tmp_path):
    from blender_addon.bl import operators
    from blender_addon.core.png import encode_png

    scene, rig, box, track = _scene_with_body_and_box(box_y=-1.0)
    char = tmp_path / "c.png"
    char.write_bytes(encode_png(np.full((16, 16, 3), 99, np.uint8)))
    scene.mimo.character = str(char)
    scene.mimo.scene_plate, scene.mimo.occlusion = True, True
    req = operators.collect_request(scene)
    assert req.scene.shape == (1, 96, 80, 3) and req.occlusion.shape == (1, 96, 80)
    assert req.occlusion.max() == 255 and req.width == 80 and req.height == 96
