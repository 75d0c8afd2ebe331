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


def _gate_pass_frame(monkeypatch, k, index):
    """Hold the job's thread just before it writes frame ``index`` of body ``k``'s pass until the
    returned event is set (that pass's frames 0..index-1 are then on disk)."""
    import threading

    from blender_addon.core import client as core_client

    gate, real = threading.Event(), core_client.write_png

    def write_png(path, image):
        if path.endswith(os.path.join(f"pass_{k}", f"frame_{index:05d}.png")):
            assert gate.wait(60), "the test never opened the gate"
        real(path, image)

    monkeypatch.setattr(core_client, "write_png", write_png)
    return gate


def _pump_until_pass(job, k, n, limit_s=120.0):
    import time

    deadline = time.monotonic() + limit_s
    while not (job.client._current is not None and job.client._current.job_dir.endswith(f"pass_{k}")
               and len(job.client._current.files) >= n):
        assert time.monotonic() < deadline, f"pass {k} never had {n} frames: {job.status}"
        addon_timers().drain_all()
        time.sleep(0.02)


def test_cancel_in_the_last_pass_composites_the_frames_every_body_has(addon, server, tmp_path, monkeypatch):
    scene, _ = _crossing(tmp_path, server)
    scene.frame_end = 6
    gate = _gate_pass_frame(monkeypatch, 1, 2)
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    job = addon_timers().active(scene)
    _pump_until_pass(job, 1, 2)
    assert bpy.ops.mimo.cancel() == {"FINISHED"}
    try:  # the gate stays shut until the job has ended: pass 1 has exactly frames 0 and 1
        assert _pump(scene, limit_s=120)[0] == "cancelled"
    finally:
        gate.set()
    assert job.client.join(30)
    folder = tmp_path / "mimo" / "two"
    (strip,) = _strips(scene)
    assert strip.name == "two (partial)" and strip.frame_final_start == 1
    assert [e.filename for e in strip.elements] == ["frame_00000.png", "frame_00001.png"]
    assert os.path.samefile(bpy.path.abspath(strip.directory), folder)
    masks = job.client.masks
    for i in range(2):  # the same composite as a finished job's: the nearer body where it is seen
        p_near, p_far = (_read(folder / f"pass_{k}" / f"frame_{i:05d}.png") for k in (0, 1))
        want = np.where((masks[1, i] > 0)[..., None], p_far, p_near)
        want = np.where((masks[0, i] > 0)[..., None], p_near, want)
        assert np.array_equal(_read(folder / f"frame_{i:05d}.png"), want)
    assert "2 of 6 frames kept as strip 'two (partial)'" in scene.mimo.status
    assert scene.mimo.status.startswith("cancelled")


def test_server_death_in_the_first_pass_keeps_that_character_as_a_strip(addon, tmp_path, monkeypatch):
    from shot_helpers import mortal_server

    with mortal_server() as (proc, address):
        scene, _ = _crossing(tmp_path, address)
        # 16 frames: more than the client's credit (8) ahead of frame 3, so the server cannot
        # have sent the whole pass before it died
        scene.frame_end, scene.mimo.connect_timeout = 16, 2.0
        gate = _gate_pass_frame(monkeypatch, 0, 3)
        assert bpy.ops.mimo.generate() == {"FINISHED"}
        job = addon_timers().active(scene)
        _pump_until_pass(job, 0, 3)
        proc.kill()
        proc.wait(10)
    gate.set()
    assert _pump(scene, limit_s=120)[0] == "error"
    assert "no answer" in scene.mimo.last_error
    assert job.client.join(30)
    folder = tmp_path / "mimo" / "two"
    (strip,) = _strips(scene)  # character 2 had no frame: nothing to composite
    assert strip.name == "two character 1 (partial)" and strip.frame_final_start == 1
    names = [e.filename for e in strip.elements]
    assert 3 <= len(names) < 16 and names == [f"frame_{i:05d}.png" for i in range(len(names))]
    assert os.path.samefile(bpy.path.abspath(strip.directory), folder / "pass_0")
    assert sorted(os.listdir(folder)) == ["pass_0"]  # no composite, no empty pass folder
    assert (f"character 1: {len(names)} of 16 frames kept as strip 'two character 1 (partial)'"
            in scene.mimo.status)
    assert scene.mimo.status.startswith("failed") and str(folder) in scene.mimo.status
