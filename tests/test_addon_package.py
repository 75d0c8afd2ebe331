"""Packaging of the Blender extension: vendored copies are byte-identical to their sources, the
manifest is what Blender's extension tooling accepts, and the zip holds the wheels of every
platform for the Python of every supported Blender version, and the licence.
(Installing the zip into real Blender: tests/blender/test_install.py.)"""
from __future__ import annotations

import filecmp
import pathlib
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blender_addon import build  # noqa: E402


def test_vendored_copies_are_byte_identical_to_their_sources():
    pairs = build.vendor_pairs()
    assert any(p[0].endswith("protocol.py") for p in pairs), "server/protocol.py must be vendored"
    for dst, src in pairs:
        assert pathlib.Path(dst).exists(), f"{dst} missing: run `make addon`"
        assert filecmp.cmp(src, dst, shallow=False), f"{dst} differs from {src}: run `make addon`"
    vendored = {p.name for p in (ROOT / "blender_addon" / "vendor").glob("*.py")} - {"__init__.py"}
    assert vendored <= {pathlib.Path(v).name for v in build.VENDOR}, "unknown file in vendor/"


def test_a_moved_vendored_source_fails_the_check(monkeypatch):
    """The list lives in one place (build.VENDOR); a source that is not where it says is an error,
    never a file silently left out of the add-on."""
    monkeypatch.setitem(build.VENDOR, "vendor/clip.py", "mimo/motion/moved_clip.py")
    with pytest.raises(build.VendorSourceMissing, match="mimo/motion/moved_clip.py"):
        build.vendor_pairs()


def test_manifest_declares_license_permissions_version_and_tested_range():
    m = tomllib.loads((ROOT / "blender_addon" / "blender_manifest.toml").read_text())
    assert m["id"] == "mimo_blender" and m["type"] == "add-on"
    assert m["license"] == ["SPDX:GPL-3.0-or-later"]
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "blender_addon" / "LICENSE").read_text()[:200]
    assert "Version 3" in (ROOT / "blender_addon" / "LICENSE").read_text()[:200]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]  # the rest of the project
    assert "menyifang" not in m.get("website", "")  # the upstream MIMO repository is not this add-on
    assert "network" in m["permissions"] and m["blender_version_min"] == "4.2.0"
    # tested: bpy 4.2.23 and 5.0.1 (Makefile); the max is exclusive
    assert m["blender_version_max"] == "5.1.0"
    assert "bpy==4.2.23" in (ROOT / "Makefile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert m["version"] == project["version"]
    assert "bpy==5.0.1" in " ".join(project["optional-dependencies"]["dev"])


def test_blender_versions_map_to_their_pythons():
    man = {"blender_version_min": "4.2.0"}
    assert build.manifest_pythons({**man, "blender_version_max": "5.1.0"}) == ["3.11"]
    assert build.manifest_pythons({**man, "blender_version_max": "5.0.1"}) == ["3.11"]
    assert build.manifest_pythons({**man, "blender_version_max": "5.3.0"}) == ["3.11", "3.13"]
    assert build.manifest_pythons(man) == ["3.11", "3.13"]
    assert build.manifest_pythons({"blender_version_min": "5.1.0"}) == ["3.13"]


@pytest.mark.parametrize("wheel, python, plat, ok", [
    ("pyzmq-27.3.0-cp311-cp311-win_amd64.whl", "3.11", "win_amd64", True),
    ("pyzmq-27.3.0-cp311-cp311-win_amd64.whl", "3.13", "win_amd64", False),
    ("pyzmq-27.3.0-cp312-abi3-win_amd64.whl", "3.13", "win_amd64", True),  # stable ABI, 3.12+
    ("pyzmq-27.3.0-cp312-abi3-win_amd64.whl", "3.11", "win_amd64", False),
    ("pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl", "3.11", "macosx_11_0_arm64", True),
    ("msgpack-1.2.4-cp311-cp311-macosx_10_9_x86_64.whl", "3.11", "macosx_11_0_arm64", False),
    ("msgpack-1.2.4-cp311-cp311-macosx_10_9_x86_64.whl", "3.11", "macosx_11_0_x86_64", True),
    ("msgpack-1.2.4-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl", "3.13",
     "manylinux_2_28_x86_64", True),
    ("msgpack-1.2.4-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl", "3.13",
     "win_amd64", False),
])
def test_wheel_tags_decide_which_python_and_platform_a_wheel_serves(wheel, python, plat, ok):
    assert build._serves(wheel, python, plat) is ok


def _build(tmp_path):
    try:
        return build.build(str(tmp_path), str(ROOT / "build" / "addon-wheels"), sync=False)
    except build.WheelFetchError as exc:  # offline and never fetched: nothing to bundle
        pytest.skip(str(exc))


def test_build_zip_bundles_wheels_for_every_supported_python_and_platform(tmp_path):
    zpath = _build(tmp_path)  # no bpy needed: a plain Python with pip builds it
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
    wheels = [n for n in names if n.startswith("wheels/")]
    assert sorted(manifest["wheels"]) == sorted("./" + w for w in wheels)
    for python in build.manifest_pythons(manifest):
        for pkg in ("pyzmq-27.3.0", "msgpack-1.2.4"):
            for plat in build.PLATFORMS:
                assert any(w.startswith(f"wheels/{pkg}-") and build._serves(w, python, plat) for w in wheels), \
                    (pkg, python, plat)
    assert "LICENSE" in names and "data/open_body.npz" in names and "data/LICENSE.md" in names
    assert "vendor/protocol.py" in names and "core/camera.py" in names
    assert not any(n.endswith(("build.py", ".pyc", "README.md")) or "__pycache__" in n for n in names)


def test_blenders_own_tool_accepts_the_zip(tmp_path):
    pytest.importorskip("bpy")
    script = build.blender_ext_script()
    assert script, "blender_ext.py not found in the bpy wheel"
    zpath = _build(tmp_path)
    out = subprocess.run([sys.executable, script, "validate", zpath], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_range_past_blender_5_0_needs_python_3_13_wheels(tmp_path):
    """Raising blender_version_max past 5.0 must bring cp313 wheels along (Blender 5.1's Python),
    and the check refuses a zip without them."""
    cache = ROOT / "build" / "addon-wheels"
    try:
        wheels311 = build.fetch_wheels(str(cache), ["3.11"])
        wheels313 = build.fetch_wheels(str(cache), ["3.13"])
    except build.WheelFetchError as exc:
        pytest.skip(str(exc))
    assert any("-cp313-cp313-" in w for w in wheels313) and not set(wheels313) & set(wheels311)
    wide = {"schema_version": "1.0.0", "id": "x", "version": "1", "name": "x", "tagline": "x", "maintainer": "x",
            "type": "add-on", "license": ["SPDX:GPL-3.0-or-later"], "blender_version_min": "4.2.0",
            "blender_version_max": "5.3.0"}
    names = ["LICENSE"] + ["wheels/" + pathlib.Path(w).name for w in wheels311 + wheels313]
    build.check_manifest({**wide, "wheels": ["./" + n for n in names[1:]]}, names)
    only311 = ["LICENSE"] + ["wheels/" + pathlib.Path(w).name for w in wheels311]
    with pytest.raises(SystemExit, match="for Python 3.13"):
        build.check_manifest({**wide, "wheels": ["./" + n for n in only311[1:]]}, only311)
    with pytest.raises(SystemExit, match="differ from the zip"):
        build.check_manifest({**wide, "wheels": []}, names)
