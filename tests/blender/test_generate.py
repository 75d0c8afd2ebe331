"""Generate in real Blender against a real ``mimo-server`` (preview backend) on 127.0.0.1:
frames on disk under //mimo/<job>/, an image strip in a free VSE channel at the scene start,
cancel, a server that is down, a request refused before it leaves Blender."""
from __future__ import annotations

import os
import pathlib
import re
import socket
import subprocess
import threading
import time

import bpy
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER = ROOT / ".venv" / "bin" / "mimo-server"  # the server needs torch: always the main venv


@pytest.fixture(scope="module")
def server():
    if not SERVER.exists():
        pytest.skip(f"{SERVER} is missing (make setup creates it)")
    proc = subprocess.Popen([str(SERVER), "--bind", "tcp://127.0.0.1:0", "--heartbeat-timeout", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"tcp://127\.0\.0\.1:\d+", line)
        assert m, f"mimo-server did not start: {line!r}"
        yield m.group(0)
    finally:
        proc.terminate()
        proc.wait(10)


def _shot(tmp_path, address, frames=4, size=(64, 48), save=True):
    from blender_addon.bl import rig_builder
    from blender_addon.core.png import encode_png

    scene = bpy.context.scene
    if save:
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    aa = np.zeros((frames, 52, 3))
    aa[:, 16, 2] = np.linspace(0, 1.2, frames)  # raise the left arm
    rig_builder.keyframe_pose(rig, aa, np.zeros((frames, 3)), list(range(1, frames + 1)))
    bpy.ops.mimo.add_camera()
    scene.frame_start, scene.frame_end = 1, frames
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    char = tmp_path / "character.png"
    char.write_bytes(encode_png(np.full((32, 24, 3), 180, np.uint8)))
    s = scene.mimo
    s.server, s.character, s.connect_timeout, s.job_name = address, str(char), 5.0, "my shot"
    return scene


def _pump(scene, limit_s=60.0):
    """Do what the timer would: call drain_all every 50 ms until the scene's job ends."""
    from blender_addon.bl import timers

    job = timers.active(scene)
    assert job is not None, "no job was started"
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        again = timers.drain_all()
        if job.state != "running":
            assert again is None and timers.active(scene) is None  # the timer stops with the job
            return job.state, time.monotonic() - start
        assert again == timers.INTERVAL_S  # the timer keeps ticking while the job runs
        time.sleep(0.05)
    raise AssertionError(f"job still running after {limit_s} s: {scene.mimo.status}")


def _strips(scene):
    from blender_addon.bl import vse

    return vse.all_strips(scene)


def test_generate_streams_frames_into_the_sequencer(addon, server, tmp_path):
    scene = _shot(tmp_path, server, frames=4)
    scene.frame_start = 1
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    assert bpy.app.timers.is_registered(addon_timers().drain_all)
    state, _ = _pump(scene)
    assert state == "done", scene.mimo.last_error
    job_dir = pathlib.Path(scene.mimo.job_dir)
    assert job_dir == tmp_path / "mimo" / "my_shot"
    files = sorted(p.name for p in job_dir.iterdir())
    assert files == [f"frame_{i:05d}.png" for i in range(4)]
    for f in files:  # Blender's own PNG reader decodes what the add-on wrote
        img = bpy.data.images.load(str(job_dir / f))
        assert tuple(img.size) == (64, 48)
        px = np.array(img.pixels[:]).reshape(48, 64, 4)
        assert px[..., :3].std() > 0  # a body on a background, not a blank frame
    (strip,) = _strips(scene)
    assert strip.type == "IMAGE" and strip.frame_final_start == 1 and strip.frame_final_duration == 4
    assert [e.filename for e in strip.elements] == files
    assert strip.directory.startswith("//mimo/my_shot")  # relative to the blend file
    assert pathlib.Path(bpy.path.abspath(strip.directory)) == job_dir
    assert scene.mimo.progress == pytest.approx(1.0) and addon_timers().active(scene) is None
    assert "preview" in scene.mimo.capabilities
    preview = bpy.data.images[scene.mimo.preview_image]  # the live preview shows the frames
    assert tuple(preview.size) == (64, 48)
    from blender_addon.bl.operators import shot_summary

    job = addon_timers().last(scene)
    assert job.seconds_per_frame > 0 and job.size == (64, 48) and job.backend == "preview"
    assert shot_summary(scene).startswith("Sends 4 frames (1-4) at 24 fps, 64x48, 1 body, preview, about ")
    assert shot_summary(scene).endswith(" (from the last job)")
    area = bpy.context.window_manager.windows[0].screen.areas[0]
    area.type = "IMAGE_EDITOR"  # Show Preview puts it in an open Image Editor, large
    assert bpy.ops.mimo.show_preview() == {"FINISHED"}
    assert area.spaces.active.image == preview

    # a second run never overwrites the first and lands in a free channel
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    assert _pump(scene)[0] == "done"
    assert pathlib.Path(scene.mimo.job_dir).name == "my_shot_001"
    strips = _strips(scene)
    assert len(strips) == 2 and len({s.channel for s in strips}) == 2
    assert sorted(p.name for p in job_dir.iterdir()) == files

    # the panel's Add Strip puts the last result in the sequencer again (a deleted strip)
    from blender_addon.bl import vse

    last = next(s for s in strips if s.name == "my_shot_001")
    vse.strips_of(scene).remove(last)
    assert bpy.ops.mimo.add_result_strip() == {"FINISHED"}
    (again,) = [s for s in _strips(scene) if s.name.startswith("my_shot_001")]
    assert again.frame_final_start == 1 and [e.filename for e in again.elements] == files


def _load_rgb(path):
    """An 8-bit PNG as (H, W, 3) uint8, top row first, read by Blender."""
    img = bpy.data.images.load(path)
    try:
        w, h = img.size
        px = np.array(img.pixels[:]).reshape(h, w, 4)[::-1, :, :3]
    finally:
        bpy.data.images.remove(img)
    return np.round(px * 255).astype(np.uint8)


def addon_timers():
    from blender_addon.bl import timers

    return timers


def test_cancel_ends_the_job_quickly(addon, server, tmp_path):
    scene = _shot(tmp_path, server, frames=60)
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    job = addon_timers().active(scene)
    deadline = time.monotonic() + 30
    while not job.client.job_id and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.client.job_id, "the server never accepted the job"
    t0 = time.monotonic()
    assert bpy.ops.mimo.cancel() == {"FINISHED"}
    state, _ = _pump(scene, limit_s=15)
    assert state == "cancelled" and time.monotonic() - t0 < 5.0
    assert scene.mimo.status.startswith("cancelled") and addon_timers().active(scene) is None
    for strip in _strips(scene):  # the frames that had arrived, if any, are kept
        assert strip.name == "my_shot (partial)" and len(strip.elements) < 60
    assert bpy.ops.mimo.cancel() == {"CANCELLED"}  # nothing left to cancel (a warning)


def test_server_down_is_reported_within_seconds(addon, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scene = _shot(tmp_path, f"tcp://127.0.0.1:{port}", frames=2)
    scene.mimo.connect_timeout = 2.0
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="no answer"):
        bpy.ops.mimo.check_server()
    assert time.monotonic() - t0 < 4.0
    assert bpy.ops.mimo.generate() == {"FINISHED"}  # the UI never waits on the socket
    assert time.monotonic() - t0 < 5.0
    state, waited = _pump(scene, limit_s=15)
    assert state == "error" and waited < 5.0
    assert "no answer" in scene.mimo.last_error and scene.mimo.status == "failed"
    assert _strips(scene) == []


def test_bad_request_is_refused_in_the_operator(addon, server, tmp_path):
    scene = _shot(tmp_path, server, frames=2)
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"hello")
    scene.mimo.character = str(bad)
    with pytest.raises(RuntimeError, match="character"):
        bpy.ops.mimo.generate()
    assert "character" in scene.mimo.last_error
    scene.mimo.character, scene.mimo.backend = "", "mimo"
    with pytest.raises(RuntimeError, match="character: choose a reference image"):
        bpy.ops.mimo.generate()
    assert addon_timers().active(scene) is None


def test_preview_needs_no_character_image(addon, server, tmp_path):
    scene = _shot(tmp_path, server, frames=2)
    scene.mimo.character = ""
    from blender_addon.bl import prefs

    assert prefs.backend_of(scene.mimo) == "preview"  # the default
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    assert _pump(scene)[0] == "done", scene.mimo.last_error
    assert len(os.listdir(scene.mimo.job_dir)) == 2


def test_check_server_reports_capabilities(addon, server, tmp_path):
    from blender_addon.bl import props

    scene = _shot(tmp_path, server, frames=2)
    assert [b for b, _ in props._backends(scene.mimo, bpy.context, "")] == ["preview", "mimo"]  # not asked yet
    assert bpy.ops.mimo.check_server() == {"FINISHED"}
    assert "preview" in scene.mimo.capabilities
    offered = scene.mimo.server_backends.split(",")
    assert "preview" in offered
    assert [b for b, _ in props._backends(scene.mimo, bpy.context, "")] == offered  # the Backend field's list
    scene.mimo.backend = "watercolour"
    with pytest.raises(RuntimeError, match="backend: the server offers preview"):
        bpy.ops.mimo.generate()
    scene.mimo.server = "tcp://127.0.0.1:6001"  # another server: the list no longer applies
    assert scene.mimo.server_backends == "" and scene.mimo.capabilities == ""


def test_frame_step_keeps_the_shot_timing(addon, server, tmp_path):
    scene = _shot(tmp_path, server, frames=6)
    scene.frame_step = 2  # frames 1, 3, 5 are generated; each image covers 2 scene frames
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    assert _pump(scene)[0] == "done", scene.mimo.last_error
    assert len(os.listdir(scene.mimo.job_dir)) == 3
    (strip,) = _strips(scene)
    assert strip.frame_final_start == 1 and strip.frame_final_duration == 6
    assert [e.filename for e in strip.elements] == [f"frame_{i // 2:05d}.png" for i in range(6)]


def test_generate_with_scene_plate_and_occlusion(addon, server, tmp_path):
    scene = _shot(tmp_path, server, frames=2)
    bpy.ops.mesh.primitive_cube_add(size=0.4, location=(0.1, -1.0, 0.2))
    scene.mimo.scene_plate, scene.mimo.occlusion = True, True
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    state, _ = _pump(scene)
    assert state == "done", scene.mimo.last_error
    assert len(os.listdir(scene.mimo.job_dir)) == 2


def test_remote_server_needs_online_access(addon, tmp_path):
    if bpy.app.online_access:
        pytest.skip("online access is on in this Blender")
    scene = _shot(tmp_path, "tcp://10.255.255.1:5555", frames=2)
    with pytest.raises(RuntimeError, match="online access"):
        bpy.ops.mimo.generate()
    with pytest.raises(RuntimeError, match="online access"):
        bpy.ops.mimo.check_server()


def test_malformed_address_is_reported(addon):
    bpy.context.scene.mimo.server = "tcp://no port here"
    with pytest.raises(RuntimeError, match="server"):
        bpy.ops.mimo.check_server()


def test_regenerate_with_scene_plate_renders_the_scene_not_the_last_result(addon, server, tmp_path):
    """Once a result's strip is in the sequencer, Blender's render is that strip (Post Processing >
    Sequencer): the second Generate's plate must still be the 3D scene without the bodies."""
    from blender_addon.bl import timers

    scene = _shot(tmp_path, server, frames=2)
    bpy.ops.mesh.primitive_cube_add(size=0.5, location=(0.6, 0.5, 0.8))  # something for the plate
    bpy.ops.mesh.primitive_cube_add(size=0.3, location=(0.15, -1.0, 0.1))  # in front of the body
    scene.mimo.scene_plate = scene.mimo.occlusion = True
    assert scene.render.use_sequencer
    plates, masks, dirs = [], [], []
    for _ in range(2):
        assert bpy.ops.mimo.generate() == {"FINISHED"}
        plates.append(np.array(timers.active(scene).client.request.scene))
        masks.append(np.array(timers.active(scene).client.request.occlusion))
        assert _pump(scene)[0] == "done", scene.mimo.last_error
        dirs.append(scene.mimo.job_dir)
    assert len(_strips(scene)) == 2
    first_result = _load_rgb(os.path.join(dirs[0], "frame_00000.png"))
    assert np.abs(first_result.astype(int) - plates[0][0]).max() > 40  # the result is not the plate
    assert np.array_equal(plates[1], plates[0])  # the true plate, both times
    assert masks[0].max() == 255 and np.array_equal(masks[1], masks[0])  # and the true occlusion
    assert scene.render.use_sequencer and scene.render.use_compositing  # restored


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
    if not SERVER.exists():
        pytest.skip(f"{SERVER} is missing (make setup creates it)")
    proc = subprocess.Popen([str(SERVER), "--bind", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        address = re.search(r"tcp://127\.0\.0\.1:\d+", proc.stdout.readline()).group(0)
        gate = _gate_frame(monkeypatch, 3)
        scene = _shot(tmp_path, address, frames=60)
        scene.mimo.connect_timeout = 2.0
        assert bpy.ops.mimo.generate() == {"FINISHED"}
        job = _pump_until_received(scene, 3)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
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
