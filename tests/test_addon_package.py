"""Packaging of the Blender extension: vendored copies are byte-identical to their sources, the
manifest is what Blender's extension tooling accepts, and the zip holds every platform's wheels.
(Installing the zip into real Blender: tests/blender/test_install.py.)"""
from __future__ import annotations

import filecmp
import pathlib
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


def test_manifest_declares_license_permissions_and_version():
    m = tomllib.loads((ROOT / "blender_addon" / "blender_manifest.toml").read_text())
    assert m["id"] == "mimo_blender" and m["type"] == "add-on"
    assert m["license"] == ["SPDX:GPL-3.0-or-later"]
    assert "network" in m["permissions"] and m["blender_version_min"] == "4.2.0"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert m["version"] == project["version"]


def test_build_zip_bundles_wheels_for_every_platform(tmp_path):
    pytest.importorskip("bpy")  # blender_ext.py comes from the bpy wheel
    try:
        zpath = build.build(str(tmp_path), str(ROOT / "build" / "addon-wheels"), sync=False)
    except build.WheelFetchError as exc:  # offline and never fetched: nothing to bundle
        pytest.skip(str(exc))
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
    wheels = [n for n in names if n.startswith("wheels/")]
    for pkg in ("pyzmq-27.3.0", "msgpack-1.2.4"):
        for plat in ("manylinux", "win_amd64", "macosx"):
            assert any(w.startswith(f"wheels/{pkg}-cp311") and plat in w for w in wheels), (pkg, plat)
    assert sorted(manifest["wheels"]) == sorted("./" + w for w in wheels)
    assert "data/open_body.npz" in names and "vendor/protocol.py" in names and "core/camera.py" in names
    assert not any(n.endswith("build.py") or "__pycache__" in n for n in names)
