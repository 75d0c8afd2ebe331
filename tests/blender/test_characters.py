"""Several characters in one shot: each body with its own character image gets its own job, and
the frames are composited by which body is in front — the nearer one wins every pixel where they
overlap (preview backend, two bodies crossing)."""
from __future__ import annotations

import os

import bpy
import numpy as np
from shot_helpers import _pump, _strips, addon_timers


def _crossing(tmp_path, server):
    from blender_addon.bl import rig_builder
    from blender_addon.core.png import encode_png

    scene = bpy.context.scene
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "two.blend"))
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 160, 120, 100
    scene.frame_start, scene.frame_end = 1, 2
    rigs = []
    for k, (y, xs) in enumerate(((-1.5, (-0.2, 0.05)), (0.5, (0.3, 0.0)))):  # near, far: crossing
        rig = rig_builder.build_rig(rig_builder.OPEN_BODY, name=f"Body {k}")
        rig.location = (xs[0], y, 0.9)  # pelvis 0.9 m up: standing on the floor
        rig.keyframe_insert("location", frame=1)
        rig.location = (xs[1], y, 0.9)
        rig.keyframe_insert("location", frame=2)
        char = tmp_path / f"character_{k}.png"
        char.write_bytes(encode_png(np.full((16, 16, 3), 60 + 120 * k, np.uint8)))
        rig.mimo_character = str(char)
        rigs.append(rig)
    bpy.ops.mimo.add_camera()
    s = scene.mimo
    s.server, s.connect_timeout, s.job_name = server, 10.0, "two"
    return scene, rigs


def _read(path):
    from blender_addon.core.png import read_png

    return read_png(str(path)).astype(int)


def _erode(mask, r=1):
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out &= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def test_two_characters_are_composited_by_depth(addon, server, tmp_path):
    scene, (near, far) = _crossing(tmp_path, server)
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    job = addon_timers().active(scene)
    masks = job.client.masks  # where Blender's depth test sees each body
    assert masks.shape == (2, 2, 120, 160)
    assert [r.bodies[0].transl[0].tolist() != [0, 0, 0] for r in job.client.requests] == [True, True]
    state, _ = _pump(scene, limit_s=120)
    assert state == "done", scene.mimo.last_error
    folder = tmp_path / "mimo" / "two"
    assert sorted(os.listdir(folder)) == ["frame_00000.png", "frame_00001.png", "pass_0", "pass_1"]
    overlapping = 0
    for i in range(2):
        final = _read(folder / f"frame_{i:05d}.png")
        p_near, p_far = (_read(folder / f"pass_{k}" / f"frame_{i:05d}.png") for k in (0, 1))
        body_near = np.abs(p_near - p_near[0, 0]).max(axis=2) > 0  # the body drawn over the background
        body_far = np.abs(p_far - p_far[0, 0]).max(axis=2) > 0
        both = _erode(body_near) & _erode(body_far)  # (silhouette edges: two rasterizers)
        overlapping += both.sum()
        assert np.array_equal(final[both], p_near[both])  # the nearer body wins where they overlap
        only_far = _erode(body_far) & ~body_near
        assert np.array_equal(final[only_far], p_far[only_far])
        assert (masks[0, i][both] > 0).all() and not (masks[1, i][both] > 0).any()
    assert overlapping > 200  # they do cross
    (strip,) = _strips(scene)
    assert [e.filename for e in strip.elements] == ["frame_00000.png", "frame_00001.png"]
