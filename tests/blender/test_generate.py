"""Generate in real Blender against a real ``mimo-server`` (preview backend) on 127.0.0.1:
frames on disk under //mimo/<job>/, an image strip in a free VSE channel at the scene start,
cancel, a server that is down, a request refused before it leaves Blender."""
from __future__ import annotations

import os
import pathlib
import socket
import time

import bpy
import numpy as np
import pytest
from shot_helpers import _pump, _shot, _strips, addon_timers


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
    offered = props.offered(scene.mimo.server_backends)
    assert "preview" in offered
    assert [b for b, _ in props._backends(scene.mimo, bpy.context, "")] == offered  # the Backend field's list
    from mimo.pipeline.presets import PRESETS

    # the Mode field offers what the server reports: every preset, with its summary
    assert props._modes(scene.mimo, bpy.context, "") == [(m, p.summary) for m, p in PRESETS.items()]
    scene.mimo.mode = "warp"
    with pytest.raises(RuntimeError, match="mode: the server offers exact"):
        bpy.ops.mimo.generate()
    scene.mimo.mode = "exact"
    scene.mimo.backend = "watercolour"
    with pytest.raises(RuntimeError, match="backend: the server offers preview"):
        bpy.ops.mimo.generate()
    scene.mimo.server = "tcp://127.0.0.1:6001"  # another server: the list no longer applies
    assert scene.mimo.server_backends == scene.mimo.server_modes == scene.mimo.capabilities == ""


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
    _shot(tmp_path, "tcp://10.255.255.1:5555", frames=2)
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


def test_roi_size_is_sent_and_said_before_generate(addon, server, tmp_path):
    from blender_addon.bl.operators import settings_of, shot_summary

    scene = _shot(tmp_path, server, frames=2, size=(320, 160))
    s = scene.mimo
    assert s.roi_auto and "ROI" not in shot_summary(scene)  # the preview draws whole frames
    s.backend = "mimo"
    assert shot_summary(scene).endswith(", MIMO exact, the mode's steps, ROI 320 (automatic)")
    assert settings_of(scene).roi_size is None  # automatic: the server's rule, not a number sent
    s.roi_auto, s.roi_size = False, 512
    assert shot_summary(scene).endswith(", MIMO exact, the mode's steps, ROI 512")
    s.roi_size = 500
    assert shot_summary(scene) == "ROI size: expected a multiple of 8 in 64..2048, got 500"
    with pytest.raises(RuntimeError, match="ROI size: expected a multiple of 8"):
        bpy.ops.mimo.generate()

    s.backend = "preview"  # (the server here has no weights) the request carries the size
    s.roi_size = 1536
    assert bpy.ops.mimo.check_server() == {"FINISHED"}
    assert s.server_max_side == 2048  # what the server reports in its limits
    s.server_max_side = 1024  # a server that allows less
    with pytest.raises(RuntimeError, match=r"ROI size: expected a multiple of 8 in 64\.\.1024, got 1536"):
        bpy.ops.mimo.generate()
    s.roi_size = 512
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    job = addon_timers().active(scene)
    assert job.client.request.roi_size == 512
    assert _pump(scene)[0] == "done", scene.mimo.last_error
    s.roi_auto = True
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    assert addon_timers().active(scene).client.request.roi_size is None
    assert _pump(scene)[0] == "done", scene.mimo.last_error
