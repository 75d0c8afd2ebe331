"""Register / unregister, the panel (with a mocked layout: draw() never runs headless), operators."""
from __future__ import annotations

import bpy
import pytest

OPERATORS = ("add_body", "add_body_file", "add_camera", "pick_camera", "import_motion", "import_camera", "retarget", "check_server", "generate",
             "cancel", "add_result_strip", "show_preview", "export_passes")


def test_register_unregister_twice():
    import blender_addon

    bpy.ops.wm.read_factory_settings(use_empty=True)
    for _ in range(2):
        blender_addon.register()
        try:
            assert hasattr(bpy.types, "MIMO_PT_main")
            assert hasattr(bpy.types.Scene, "mimo")
            for op in OPERATORS:
                assert hasattr(bpy.ops.mimo, op)
            assert bpy.context.scene.mimo.server == ""  # the preferences' server
            from blender_addon.bl import prefs

            assert prefs.server_of(bpy.context.scene.mimo) == "tcp://127.0.0.1:5555"
        finally:
            blender_addon.unregister()
        assert not hasattr(bpy.types, "MIMO_PT_main")
        assert not hasattr(bpy.types.Scene, "mimo")


def test_panel_lists_the_controls(addon, rig_file, draw_panels, tmp_path):
    import numpy as np

    from blender_addon.bl import panel, rig_builder, timers
    from blender_addon.core.client import JobClient
    from blender_addon.core.png import encode_png

    scene = bpy.context.scene
    log = draw_panels(scene)
    ops = [a[0] for n, a, k in log if n == "operator"]
    props = [a[1] for n, a, k in log if n == "prop"]
    assert "mimo.add_body" in ops and "mimo.generate" in ops and "mimo.add_camera" in ops
    assert "mimo.import_camera" in ops  # in the Camera panel (and next to Import Motion with a body active)
    assert {"server", "character", "camera", "backend", "seed", "connect_timeout"} <= set(props)
    # collapsible sub-panels under the main one; Server starts closed
    assert [c.bl_label for c in panel.classes] == ["MIMO", "Body", "Camera", "Shot", "Server"]
    assert all(c.bl_parent_id == "MIMO_PT_main" for c in panel.classes[1:])
    assert "DEFAULT_CLOSED" in panel.MIMO_PT_server.bl_options
    assert scene.mimo.bl_rna.properties["connect_timeout"].name == "Wait for Server"
    assert "plate" in scene.mimo.bl_rna.properties["occlusion"].name
    # what will be sent, before Generate
    labels = [k.get("text") for n, a, k in log if n == "label"]
    assert " ".join(labels[:2]) == "Sends 250 frames (1-250) at 24 fps, 1920x1080, 0 bodies, preview"

    job = timers.ActiveJob(client=JobClient("tcp://127.0.0.1:1", None, ""), scene_name=scene.name,
                           job_dir="", start_frame=1, total=4)  # a job that was never started
    timers._JOBS[scene.name] = job
    try:
        job.show(scene, status="frame 1/4", progress=0.25)
        log = draw_panels(scene)
        assert "mimo.cancel" in [a[0] for n, a, k in log if n == "operator"]
        assert ("progress", (), {"factor": 0.25, "type": "BAR", "text": "frame 1/4"}) in log
    finally:
        timers._JOBS.clear()
    scene.mimo.last_error = ("server: no answer from tcp://127.0.0.1:5555 within 5.0 s: is "
                             "`mimo-server` running there?")  # a file saved after a failed job
    log = draw_panels(scene)
    assert "mimo.generate" in [a[0] for n, a, k in log if n == "operator"]
    labels = [k for n, a, k in log if n == "label"]
    first = next(i for i, k in enumerate(labels) if k.get("icon") == "ERROR")
    errors = [labels[first]["text"]]
    for k in labels[first + 1:]:
        if k.get("icon") != "BLANK1":
            break
        errors.append(k["text"])
    assert len(errors) > 1 and all(len(t) <= panel.WRAP for t in errors)  # wrapped, not cut
    # in a sidebar, lines as long as its width holds: Blender's default width (~230 px) holds
    # about 25 characters of the label font; a wider one more, a narrow one no fewer than 16
    assert panel.wrap_chars(229, 1.0) == 25 and panel.wrap_chars(458, 2.0) == 25
    assert panel.wrap_chars(500, 1.0) == 64 and panel.wrap_chars(60, 1.0) == 16
    assert " ".join(errors) == scene.mimo.last_error
    # a thumbnail of the character image
    path = tmp_path / "me.png"
    path.write_bytes(encode_png(np.full((12, 10, 3), 77, np.uint8)))
    scene.mimo.character = str(path)
    img = bpy.data.images[scene.mimo.character_image]
    assert tuple(img.size) == (10, 12)
    icons = [k for n, a, k in draw_panels(scene) if n == "template_icon"]
    assert {"icon_value": img.preview.icon_id, "scale": 4.0} in icons
    scene.mimo.character = ""
    assert scene.mimo.character_image == ""
    rig = rig_builder.build_rig(rig_file[0])
    log = draw_panels(scene, rig)
    sliders = [k.get("text") for n, a, k in log if n == "prop" and a[1] == "mimo_shape"]
    assert sliders == ["Wide", "Tall"]


def test_preferences_give_the_server_and_backend_of_scenes_that_name_none(addon):
    from blender_addon.bl import operators, prefs

    s = bpy.context.scene.mimo
    entry = bpy.context.preferences.addons.new()  # what enabling the add-on creates
    entry.module = prefs.ADDON_ID
    try:
        p = prefs.preferences()
        p.server, p.backend = "tcp://127.0.0.1:7777", "mimo"
        got = operators.settings_of(bpy.context.scene)
        assert (got.server, got.backend) == ("tcp://127.0.0.1:7777", "mimo")
        s.server, s.backend = "tcp://127.0.0.1:6000", "preview"  # the scene's own win
        got = operators.settings_of(bpy.context.scene)
        assert (got.server, got.backend) == ("tcp://127.0.0.1:6000", "preview")
    finally:
        bpy.context.preferences.addons.remove(entry)


def test_add_body_reports_a_bad_file(addon, tmp_path):
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.mimo.add_body_file(filepath=str(tmp_path / "missing.npz"))
    import numpy as np

    np.savez(tmp_path / "partial.npz", joint_names=np.array(["pelvis"]))
    with pytest.raises(RuntimeError, match="lacks keys"):
        bpy.ops.mimo.add_body_file(filepath=str(tmp_path / "partial.npz"))
    assert not [o for o in bpy.data.objects if o.type == "ARMATURE"]


def test_enabling_is_cheap_no_zmq_or_torch(tmp_path):
    """Registering imports neither zmq nor the protocol (they load when a job starts), nor torch."""
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import bpy, blender_addon\n"
            "blender_addon.register()\n"
            "bad = [m for m in ('zmq', 'msgpack', 'torch') if m in sys.modules]\n"
            "blender_addon.unregister()\n"
            "print('LOADED', bad)\n") % str(root)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "LOADED []" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
