"""The shipped example clips are valid, plausible on the open body, and regenerate exactly."""
from __future__ import annotations

import glob
import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mimo.body import load_body
from mimo.motion import MotionClip

ROOT = Path(__file__).parents[1]
MOTIONS = ROOT / "examples" / "motions"


@pytest.fixture(scope="module")
def body():
    return load_body("open")


def _pose(body, clip):
    t = clip.bodies[0]
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return body(f(t.global_orient), f(t.body_pose), transl=f(t.transl))


@pytest.mark.parametrize("name, fps, frames", [("walk", 30.0, 39), ("dance", 60.0, 98)])
def test_example_clip_is_valid_and_stands_on_the_floor(body, name, fps, frames):
    clip = MotionClip.load(MOTIONS / f"{name}.npz")
    assert clip.fps == pytest.approx(fps, rel=1e-3) and clip.num_frames == frames
    assert clip.bodies[0].model == "open"
    out = _pose(body, clip)
    lowest = out.vertices[:, :, 1].min(1).values
    assert float(lowest.min()) > -0.1 and float(lowest.max()) < 0.1  # feet near y = 0
    # upright: head above pelvis in every frame
    assert torch.all(out.joints[:, 15, 1] > out.joints[:, 0, 1] + 0.3)


def test_walk_goes_forward_facing_plus_z(body):
    out = _pose(body, MotionClip.load(MOTIONS / "walk.npz"))
    pelvis = out.joints[:, 0]
    assert float(pelvis[-1, 2] - pelvis[0, 2]) > 1.0
    assert abs(float(pelvis[-1, 0] - pelvis[0, 0])) < 0.2
    hips = out.joints[0, 1] - out.joints[0, 2]  # left - right hip points to +X when facing +Z
    assert float(hips[0]) > 0.15


WHEELS = sorted(glob.glob("/opt/pypi-more/files/pybullet-3.2.7-*.whl"))


@pytest.mark.skipif(not WHEELS, reason="the pybullet 3.2.7 wheel is not on this machine")
def test_examples_regenerate_from_the_pybullet_wheel(tmp_path):
    spec = importlib.util.spec_from_file_location("make_examples", MOTIONS / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with zipfile.ZipFile(WHEELS[0]) as z:
        text = z.read("pybullet_data/data/motions/humanoid3d_walk.txt").decode()
    new = mod.convert(json.loads(text), "walk")
    old = MotionClip.load(MOTIONS / "walk.npz")
    np.testing.assert_allclose(new.bodies[0].body_pose, old.bodies[0].body_pose, atol=1e-6)
    np.testing.assert_allclose(new.bodies[0].transl, old.bodies[0].transl, atol=1e-9)
