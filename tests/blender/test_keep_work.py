"""Work is never lost: a cancelled job or a dead server leaves the frames that arrived as a
partial strip; an unsaved .blend writes to a persistent folder; Ctrl+Z during a job keeps Cancel
and the result's strip is an undo step; opening another file cancels the job."""
from __future__ import annotations

import os
import pathlib
import socket
import threading
import time

import bpy
from shot_helpers import _pump, _shot, _strips, addon_timers, mortal_server


def _gate_frame(monkeypatch, index):
    """Hold the job's thread just before it writes frame ``index`` until the returned event is set
    (frames 0..index-1 are then on disk and in the panel, deterministically)."""
    from blender_addon.core import client as core_client

    gate, real = threading.Event(), core_client.write_png

    def write_png(path, image):
        if os.path.basename(path) == f"frame_{index:05d}.png":
            assert gate.wait(60), "the test never opened the gate"
        real(path, image)

    monkeypatch.setattr(core_client, "write_png", write_png)
    return gate


def _pump_until_received(scene, n, limit_s=60.0):
    job = addon_timers().active(scene)
    deadline = time.monotonic() + limit_s
    while job.received < n:
        assert time.monotonic() < deadline, f"only {job.received} frames arrived: {scene.mimo.status}"
        addon_timers().drain_all()
        time.sleep(0.02)
    return job


def _assert_partial_strip(scene, job, at_least):
    (strip,) = _strips(scene)
    assert strip.name == "my_shot (partial)" and strip.frame_final_start == 1
    names = [e.filename for e in strip.elements]
    assert at_least <= len(names) < 60  # the server holds back frames beyond the client's credit
    assert names == [f"frame_{i:05d}.png" for i in range(len(names))]
    assert job.client.join(30)
    on_disk = sorted(os.listdir(job.job_dir))
    assert on_disk[:len(names)] == names and not [f for f in on_disk if not f.endswith(".png")]
    assert f"{len(names)} of 60 frames kept as strip 'my_shot (partial)'" in scene.mimo.status


def test_cancel_keeps_the_frames_that_arrived_as_a_partial_strip(addon, server, tmp_path, monkeypatch):
    gate = _gate_frame(monkeypatch, 3)
    scene = _shot(tmp_path, server, frames=60)
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    job = _pump_until_received(scene, 3)
    assert bpy.ops.mimo.cancel() == {"FINISHED"}
    gate.set()
    assert _pump(scene)[0] == "cancelled"
    _assert_partial_strip(scene, job, at_least=3)
    assert scene.mimo.status.startswith("cancelled")


def test_server_death_keeps_the_frames_that_arrived(addon, tmp_path, monkeypatch):
    with mortal_server() as (proc, address):
        gate = _gate_frame(monkeypatch, 3)
        scene = _shot(tmp_path, address, frames=60)
        scene.mimo.connect_timeout = 2.0
        assert bpy.ops.mimo.generate() == {"FINISHED"}
        job = _pump_until_received(scene, 3)
        proc.kill()
        proc.wait(10)
    gate.set()
    assert _pump(scene)[0] == "error"
    assert "no answer" in scene.mimo.last_error
    _assert_partial_strip(scene, job, at_least=3)
    assert scene.mimo.status.startswith("failed")


def test_unsaved_blend_writes_to_a_persistent_folder(addon, server, tmp_path, monkeypatch):
    from blender_addon.bl import prefs

    home = tmp_path / "home"
    (home / "Videos").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    scene = _shot(tmp_path, server, frames=2, save=False)
    assert not bpy.data.filepath
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    job = addon_timers().active(scene)
    assert job.job_dir == str(home / "Videos" / "MIMO" / "my_shot")
    assert job.warning == f"the .blend is not saved: frames go to {home / 'Videos' / 'MIMO'}"
    assert _pump(scene)[0] == "done", scene.mimo.last_error
    assert sorted(os.listdir(job.job_dir)) == ["frame_00000.png", "frame_00001.png"]
    (strip,) = _strips(scene)
    assert pathlib.Path(strip.directory) == home / "Videos" / "MIMO" / "my_shot"

    addon_entry = bpy.context.preferences.addons.new()  # what enabling the add-on creates
    addon_entry.module = prefs.ADDON_ID
    try:
        prefs.preferences().output_dir = str(tmp_path / "renders")
        assert bpy.ops.mimo.generate() == {"FINISHED"}
        job = addon_timers().active(scene)
        assert job.job_dir == str(tmp_path / "renders" / "my_shot")
        assert _pump(scene)[0] == "done", scene.mimo.last_error
        assert len(os.listdir(job.job_dir)) == 2
    finally:
        bpy.context.preferences.addons.remove(addon_entry)


def test_undo_during_a_job_keeps_cancel_and_the_strip_is_an_undo_step(addon, server, tmp_path, draw_panels):
    def _panel_operators(scene):
        return [a[0] for n, a, k in draw_panels(scene) if n == "operator"]

    scene = _shot(tmp_path, server, frames=3)
    bpy.ops.ed.undo_push(message="set up the shot")
    bpy.ops.ed.undo_push(message="before Generate")
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    bpy.ops.ed.undo()  # Ctrl+Z while the job runs: the scene's properties go back
    scene = bpy.context.scene
    ops = _panel_operators(scene)
    assert "mimo.cancel" in ops and "mimo.generate" not in ops  # the job is still shown and cancellable
    assert _pump(scene)[0] == "done", scene.mimo.last_error
    (strip,) = _strips(scene)
    name = strip.name
    assert "mimo.generate" in _panel_operators(scene)
    bpy.ops.ed.undo()  # Ctrl+Z removes the strip, and only the strip ...
    scene = bpy.context.scene
    assert _strips(scene) == [] and scene.camera is not None
    bpy.ops.ed.redo()  # ... and Ctrl+Shift+Z brings it back
    scene = bpy.context.scene
    assert [s.name for s in _strips(scene)] == [name]


def test_opening_another_file_cancels_the_job_and_forgets_it(addon, tmp_path, draw_panels):
    with socket.socket() as sock:  # a port nobody listens on: the job stays in "connecting"
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scene = _shot(tmp_path, f"tcp://127.0.0.1:{port}", frames=2)
    scene.mimo.connect_timeout = 30.0
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    job = addon_timers().active(scene)
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "shot.blend"))  # (the same name: a new file)
    scene = bpy.context.scene
    assert addon_timers().active(scene) is None and addon_timers().last(scene) is None
    assert job.client._cancel.is_set()
    assert "mimo.generate" in [a[0] for n, a, k in draw_panels(scene) if n == "operator"]
