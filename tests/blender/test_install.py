"""Build the extension zip and install it into a real Blender (the bpy wheel) in a fresh process
with ``bpy.ops.extensions.package_install_files``: the bundled wheels are unpacked, the add-on is
enabled as ``bl_ext.user_default.mimo_blender`` and its panel and operators exist."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import glob, os, sys
    import bpy
    zpath = sys.argv[1]
    bpy.ops.extensions.package_install_files(filepath=zpath, repo="user_default", enable_on_install=True)
    mod = "bl_ext.user_default.mimo_blender"
    try:
        assert mod in sys.modules, sorted(m for m in sys.modules if m.startswith("bl_ext"))
        assert hasattr(bpy.types, "MIMO_PT_main"), "panel not registered"
        assert bpy.types.MIMO_PT_main.bl_category == "MIMO"
        prefs = bpy.context.preferences.addons[mod].preferences  # the output folder preference
        assert prefs is not None and hasattr(prefs, "output_dir"), prefs
        for op in ("add_body", "add_camera", "generate", "cancel", "check_server", "import_motion"):
            assert hasattr(bpy.ops.mimo, op), op
        site = glob.glob(os.path.join(os.environ["BLENDER_USER_RESOURCES"], "extensions", ".local",
                                      "lib", "python3*", "site-packages"))
        assert site and os.path.isdir(os.path.join(site[0], "zmq")), site
        assert glob.glob(os.path.join(site[0], "msgpack*"))
        assert site[0] in sys.path
        # the unpacked wheels work on their own (inside this venv Blender finds the venv's zmq
        # first; a real Blender has only the bundled one): import them with no site-packages
        import subprocess
        chk = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path.insert(0, %r); "
                              "import zmq, msgpack; print(zmq.__file__, zmq.zmq_version())" % site[0]],
                             capture_output=True, text=True)
        assert chk.returncode == 0 and chk.stdout.startswith(site[0]), chk.stdout + chk.stderr
        __import__(mod + ".vendor.client")
        assert bpy.ops.mimo.add_body() == {"FINISHED"}  # the shipped open body
        rig = bpy.context.active_object
        assert rig.type == "ARMATURE" and len(rig.data.bones) == 52
        print("INSTALL-OK")
    finally:
        bpy.ops.preferences.addon_disable(module=mod)
''')


def test_zip_installs_and_enables_in_blender(tmp_path):
    sys.path.insert(0, str(ROOT))
    from blender_addon import build

    try:
        zpath = build.build(str(tmp_path / "dist"), str(ROOT / "build" / "addon-wheels"), sync=False)
    except build.WheelFetchError as exc:  # offline and never fetched: nothing to bundle
        pytest.skip(str(exc))
    res = tmp_path / "blender-user"
    res.mkdir()
    script = tmp_path / "install.py"
    script.write_text(SCRIPT)
    env = {"BLENDER_USER_RESOURCES": str(res), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, str(script), zpath], capture_output=True, text=True,
                         timeout=240, env=env, cwd=str(tmp_path))
    assert "INSTALL-OK" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
