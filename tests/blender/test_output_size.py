"""Width/Height that differ from the render's aspect: the render is cropped to the output's aspect
and scaled alike in x and y (never squeezed), the layers follow, and the panel says so."""
from __future__ import annotations

import bpy
import numpy as np
import pytest

from blender_addon.core import axes
from blender_addon.core import camera as cam


def _scene(tmp_path):
    from blender_addon.bl import rig_builder
    from blender_addon.core.png import encode_png

    scene = bpy.context.scene
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = 160, 90, 100  # 16:9
    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    bpy.ops.mimo.add_camera()
    bpy.ops.mesh.primitive_cube_add(size=0.4, location=(0.5, 0.0, 0.6))
    box = bpy.context.active_object
    scene.frame_start = scene.frame_end = 1
    char = tmp_path / "c.png"
    char.write_bytes(encode_png(np.full((16, 16, 3), 99, np.uint8)))
    scene.mimo.character = str(char)
    scene.mimo.width = scene.mimo.height = 64  # square output of a 16:9 render
    return scene, rig, box


def _blender_pixels(scene, points):
    """Blender's own projection (render pixels, top-left origin) of world points."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    r = scene.render
    out = []
    for p in points:
        v = world_to_camera_view(scene, scene.camera, Vector(p))
        out.append((v.x * r.resolution_x, (1.0 - v.y) * r.resolution_y))
    return np.array(out)


def test_square_output_of_a_wide_render_is_cropped_not_squeezed(addon, tmp_path):
    from blender_addon.bl import operators

    scene, rig, box = _scene(tmp_path)
    scene.mimo.scene_plate = True
    req = operators.collect_request(scene)
    K = np.asarray(req.camera.K[0], np.float64)
    assert (req.width, req.height) == (64, 64)
    assert K[0, 0] == pytest.approx(K[1, 1], rel=1e-6)  # square pixels stay square (was 0.5625)

    # the box's corners land where Blender puts them in the render, cropped to the centre 90x90
    M = np.array([list(r) for r in box.matrix_world])
    corners = np.array([list(v.co) for v in box.data.vertices]) @ M[:3, :3].T + M[:3, 3]
    full = _blender_pixels(scene, corners)
    expected = (full - [35.0, 0.0]) * (64 / 90)
    got = cam.project(K, np.asarray(req.camera.R[0], np.float64), np.asarray(req.camera.t[0], np.float64),
                      axes.points_blender_to_wire(corners))
    assert np.abs(got - expected).max() < 1e-3

    # the plate is that crop too: the box's pixels fill its projected bounding rectangle (2 px: the
    # render's antialiasing and the nearest-pixel scale)
    plate = req.scene[0].astype(int)
    bg = plate[0, 0]
    ys, xs = np.nonzero(np.abs(plate - bg).max(axis=2) > 10)
    lo, hi = expected.min(axis=0), expected.max(axis=0)
    assert abs(xs.min() - lo[0]) <= 2 and abs(xs.max() + 1 - hi[0]) <= 2
    assert abs(ys.min() - lo[1]) <= 2 and abs(ys.max() + 1 - hi[1]) <= 2


def test_one_side_given_follows_the_render_aspect(addon, tmp_path):
    from blender_addon.bl import operators

    scene, _, _ = _scene(tmp_path)
    scene.mimo.height = 0
    req = operators.collect_request(scene)
    assert (req.width, req.height) == (64, 40)  # 64 * 90 / 160 = 36 -> nearest multiple of 8
    assert req.camera.K[0][0, 0] == pytest.approx(req.camera.K[0][1, 1], rel=1e-6)


def test_panel_says_what_is_cropped(addon, tmp_path, draw_panels):
    scene, _, _ = _scene(tmp_path)
    labels = [k.get("text", "") for n, a, k in draw_panels(scene) if n == "label"]
    assert "Output 64x64: the 160x90 render cropped to" in labels
    assert "90x90 (sides cut), scaled" in labels  # (wrapped over two lines)
    scene.mimo.width = scene.mimo.height = 0
    text = " ".join(k.get("text", "") for n, a, k in draw_panels(scene) if n == "label")
    assert "Output 160x88: the render size (cut to multiples of 8 from 160x90)" in text
