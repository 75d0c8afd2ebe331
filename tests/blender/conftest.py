"""Real-Blender tests (the PyPI ``bpy`` wheel): run by .venv (bpy 5.0) and by .venv-bpy42
(bpy 4.2 LTS) — ``make test`` runs both.

The add-on is imported from the source tree as the package ``blender_addon`` and registered per
test; it is always unregistered in teardown (4.2 segfaults and 4.5 hangs at interpreter exit
otherwise). Timers never fire in module mode, so tests pump ``bl.timers.drain`` themselves.
"""
from __future__ import annotations

import os
import pathlib
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="mimo-test-blender-"))

bpy = pytest.importorskip("bpy")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(str(pathlib.Path(__file__).parent)):
            item.add_marker(pytest.mark.blender)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(300))


@pytest.fixture
def addon():
    """A fresh empty scene with the add-on registered (unregistered afterwards)."""
    import blender_addon

    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_addon.register()
    try:
        yield blender_addon
    finally:
        blender_addon.unregister()


def synthetic_rig_data(path: str, seed: int = 0) -> dict:
    """A small SMPL-H-layout body written in the rig data format: 52 joints at plausible T-pose
    places, one little box per joint (8 vertices), each vertex skinned to its joint and the
    parent, and 2 shape directions. Returns the arrays."""
    import numpy as np

    from blender_addon.core.smplh import JOINT_NAMES, PARENTS

    rng = np.random.default_rng(seed)
    J = len(JOINT_NAMES)
    joints = np.zeros((J, 3))
    joints[0] = [0.0, 0.9, 0.0]
    for j in range(1, J):
        name = JOINT_NAMES[j]
        side = 1.0 if name.startswith("left") else -1.0 if name.startswith("right") else 0.0
        if any(k in name for k in ("hip", "knee", "ankle", "foot")):
            step = [0.08 * side if "hip" in name else 0.0, -0.4 if "hip" not in name else -0.05,
                    0.1 if "foot" in name else 0.0]
        elif any(k in name for k in ("collar", "shoulder", "elbow", "wrist")) or side and name[-1].isdigit():
            step = [side * (0.05 if name[-1].isdigit() else 0.15), 0.0, 0.01 * rng.normal()]
        else:
            step = [0.0, 0.12, 0.0]
        joints[j] = joints[PARENTS[j]] + np.array(step) + rng.normal(scale=0.005, size=3)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * 0.02
    verts = (joints[:, None, :] + corners[None]).reshape(-1, 3)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = []
    for j in range(J):
        for a, b, c, d in quads:
            faces += [(8 * j + a, 8 * j + b, 8 * j + c), (8 * j + a, 8 * j + c, 8 * j + d)]
    W = np.zeros((8 * J, J))
    for j in range(J):
        p = PARENTS[j]
        w = rng.uniform(0.5, 1.0, size=8) if p >= 0 else np.ones(8)
        W[8 * j:8 * j + 8, j] = w
        if p >= 0:
            W[8 * j:8 * j + 8, p] = 1.0 - w
    shapedirs = rng.normal(scale=0.01, size=(8 * J, 3, 2))
    joint_shapedirs = rng.normal(scale=0.01, size=(J, 3, 2))
    arrays = dict(joint_names=np.array(JOINT_NAMES), parents=np.array(PARENTS, np.int32),
                  rest_joints=joints.astype(np.float32), rest_vertices=verts.astype(np.float32),
                  faces=np.array(faces, np.int32), skin_weights=W.astype(np.float32),
                  shapedirs=shapedirs.astype(np.float32), joint_shapedirs=joint_shapedirs.astype(np.float32),
                  beta_names=np.array(["wide", "tall"]), kind=np.array("open"))
    np.savez(path, **arrays)
    return {k: np.asarray(v) for k, v in arrays.items()}


@pytest.fixture
def rig_file(tmp_path):
    path = str(tmp_path / "synthetic_rig.npz")
    return path, synthetic_rig_data(path)


class _Layout:
    """Records what a panel's draw() puts in its layout (draw() never runs headless)."""

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.log.append((name, args, kwargs))
            return _Layout(self.log)
        return call


def _draw_panels(scene, active_object=None) -> list:
    import types

    from blender_addon.bl import panel

    log: list = []
    ctx = types.SimpleNamespace(scene=scene, active_object=active_object)
    for cls in panel.classes:
        cls.draw(types.SimpleNamespace(layout=_Layout(log)), ctx)
    return log


@pytest.fixture
def draw_panels():
    """``draw_panels(scene, active_object=None)``: draw every MIMO panel and sub-panel with a
    recording layout; returns the calls made as ``(method, args, kwargs)``."""
    return _draw_panels


@pytest.fixture(scope="module")
def server():
    """A real ``mimo-server`` (preview backend) on a free 127.0.0.1 port, for one test module."""
    import re
    import subprocess

    from shot_helpers import SERVER

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
