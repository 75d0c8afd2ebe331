"""Shared by the Generate tests: a real ``mimo-server`` (preview backend) on 127.0.0.1, a small
shot (open body raising its arm, a camera, a character image), and what the timer would do."""
from __future__ import annotations

import contextlib
import os
import pathlib
import re
import subprocess
import time

import bpy
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
# the server needs torch: always the main venv (MIMO_TEST_SERVER: another checkout's, e.g. a worktree's)
SERVER = pathlib.Path(os.environ.get("MIMO_TEST_SERVER") or ROOT / ".venv" / "bin" / "mimo-server")


@contextlib.contextmanager
def mortal_server():
    """A server process of its own for a test that kills it mid-job: yields (process, address);
    skips when the server is missing; the process is gone on leaving."""
    import pytest

    if not SERVER.exists():
        pytest.skip(f"{SERVER} is missing (make setup creates it)")
    proc = subprocess.Popen([str(SERVER), "--bind", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        yield proc, re.search(r"tcp://127\.0\.0\.1:\d+", proc.stdout.readline()).group(0)
    finally:
        if proc.poll() is None:
            proc.kill()
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


def addon_timers():
    from blender_addon.bl import timers

    return timers
