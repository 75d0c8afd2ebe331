"""Make Training Dataset in real Blender: the example's painted open body walking past a pillar,
two ring cameras (in front of the body and behind it), 3 frames at 96x96, Workbench.

Checked against independent references: the layout reader and ``mimo dataset check`` (the
library), the codes against the server's own rendering of the same request
(``server/adapter.render_request_codes``, in the project's venv), Blender's rendered silhouette
against the codes' body mask, the plate against the frames away from the body, and the
occlusion mask against where the pillar crosses in front of the body.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import bpy
import numpy as np
import pytest
from shot_helpers import ROOT

LIB_PYTHON = ROOT / ".venv" / "bin" / "python"  # torch + mimo: the project's main venv
WALK = ROOT / "examples" / "motions" / "walk.npz"
SIZE, FRAMES = 96, 3


def _example():
    spec = importlib.util.spec_from_file_location("make_dataset_blender", ROOT / "examples" / "make_dataset_blender.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def lib_python():
    if not LIB_PYTHON.exists():
        pytest.skip(f"{LIB_PYTHON} is missing (make setup creates it)")
    return str(LIB_PYTHON)


@pytest.fixture
def example_scene(addon):
    """The example's scene (it re-reads factory settings and registers the add-on itself: undo
    the fixture's registration first so the add-on is registered once)."""
    addon.unregister()
    rig = _example().build_scene(pillar=True, frames=FRAMES)
    return bpy.context.scene, rig


def _clip(folder):
    """A clip's arrays and meta, read as ``mimo.data.layout`` stores them (its reader needs PIL for
    the reference image, which Blender's Python lacks: the project's venv reads it below)."""
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {k: np.load(folder / f"{k}.npy") for k in ("frames", "codes", "scene", "occlusion")
              if (folder / f"{k}.npy").exists()}
    return meta, arrays


def _dilate(mask, r):
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, axis=-2), dx, axis=-1)
    return out


SERVER_CODES = r"""
import json, sys
import numpy as np
from mimo.data.dataset import MimoDataset
from mimo.data.layout import list_clips, read_clip
from mimo.motion import load_npz
from server import protocol as P
from server.adapter import render_request_codes

out = {}
for folder in list_clips(sys.argv[1]):
    clip = read_clip(folder)
    motion, cam = load_npz(folder / "motion.npz")
    b = motion.bodies[0]
    req = P.GenerateRequest(character=b"", body_model=b.model, width=cam.width, height=cam.height,
        bodies=[P.BodyParams(global_orient=b.global_orient, body_pose=b.body_pose, transl=b.transl, betas=b.betas,
                             left_hand_pose=b.left_hand_pose, right_hand_pose=b.right_hand_pose)],
        camera=P.CameraParams(K=cam.K, R=cam.R, t=cam.t, width=cam.width, height=cam.height))
    server, _ = render_request_codes(req, "cpu")
    ours = np.asarray(clip.codes)
    diff = np.abs(server.astype(int) - ours.astype(int)).max(-1)
    out[folder.name] = {"same": float((diff == 0).mean()), "max": int(diff.max()),
                        "body": float(server.any(-1).mean())}
    ref = clip.characters[0]
    out[folder.name]["reference"] = [list(ref.shape), int(ref[:4, :4].min()), float((ref < 200).any(-1).mean())]
item = MimoDataset(sys.argv[1], num_frames=2, size=32)[0]
out["item"] = {k: list(v.shape) for k, v in item.items()}
print(json.dumps(out))
"""


def test_dataset_of_two_clips_matches_the_library(example_scene, lib_python, tmp_path):
    scene, rig = example_scene
    out = tmp_path / "data"
    camera, size = scene.camera, (scene.render.resolution_x, scene.render.resolution_y)
    assert bpy.ops.mimo.make_dataset(directory=str(out), motions=str(WALK), cameras="RING", ring_count=2,
                                     frames=FRAMES, width=SIZE, height=SIZE, python=lib_python) == {"FINISHED"}
    assert sorted(os.listdir(out)) == ["walk_ring00", "walk_ring01"]  # no .partial folder left
    # every setting is back: no ring camera, the render size, no motion on the rig
    assert scene.camera == camera and (scene.render.resolution_x, scene.render.resolution_y) == size
    assert not [o for o in scene.objects if o.name.startswith("ring")]
    assert rig.animation_data is None or rig.animation_data.action is None
    assert all(pb.matrix_basis == pb.matrix_basis.Identity(4) for pb in rig.pose.bones)

    clips = {p.name: _clip(p) for p in sorted(out.iterdir())}
    for name, (meta, a) in clips.items():
        assert a["frames"].shape == (FRAMES, SIZE, SIZE, 3) and a["occlusion"].shape == (FRAMES, SIZE, SIZE)
        assert meta["fps"] == 30.0 and meta["body_model"] == "open" and meta["characters"] == ["character_0.png"]
        assert meta["blender"]["overlap"] > 0.8

    # the library reads it: mimo dataset check, MimoDataset, and the server's codes of the request
    check = subprocess.run([str(LIB_PYTHON.parent / "mimo"), "dataset", "check", str(out)], capture_output=True,
                           text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "2 clip(s) readable, 0 broken; 6 frames" in check.stdout
    run = subprocess.run([lib_python, "-c", SERVER_CODES, str(out)], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr
    server = json.loads(run.stdout.strip().splitlines()[-1])
    assert server.pop("item") == {"frames": [3, 2, 32, 32], "scene": [3, 2, 32, 32], "codes": [3, 2, 32, 32],
                                  "occlusion": [2, 32, 32], "reference": [3, 32, 32], "clip": [3, 224, 224]}
    for name, s in server.items():  # float32 posing noise may move a code by a step on a few pixels
        assert s["same"] > 0.998 and s["max"] <= 2 and s["body"] > 0.05, (name, s)
        # the reference: the character alone on white, a good part of the picture
        assert s["reference"][:2] == [[SIZE, SIZE, 3], 255] and s["reference"][2] > 0.05, (name, s)

    for name, (meta, a) in clips.items():
        frames, scene_px = a["frames"].astype(int), a["scene"].astype(int)
        body = a["codes"].any(-1)
        occ = a["occlusion"] > 127
        seen = np.abs(frames - scene_px).max(-1) > 8  # where Blender drew the character
        for f in range(FRAMES):  # Blender's silhouette is the codes' body, less what is hidden
            inter = (seen[f] & body[f] & ~occ[f]).sum()
            iou = inter / (seen[f] | (body[f] & ~occ[f])).sum()
            assert iou > 0.8, (name, f, iou)
        far = ~_dilate(body, 2)  # away from the body the frames are the plate
        assert np.abs(frames - scene_px).max(-1)[far].max() <= 2, name
    front, back = (clips[n][1]["occlusion"] > 127 for n in ("walk_ring00", "walk_ring01"))
    # mid-clip the pillar crosses in front of the chest for the front camera, behind the body for the back one
    assert front[1].sum() > 40 and back[1].sum() < 10
    front_body = clips["walk_ring00"][1]["codes"].any(-1)
    assert (front[1] & ~_dilate(front_body[1], 1)).sum() == 0  # only body pixels are occluded
    assert front[0].sum() < 10 and front[2].sum() < 10  # the pillar is beside the body then

    # nothing is overwritten without asking
    stamp = os.path.getmtime(out / "walk_ring00" / "frames.npy")
    with pytest.raises(RuntimeError, match="walk_ring00 and 1 more already exist: tick Overwrite"):
        bpy.ops.mimo.make_dataset(directory=str(out), motions=str(WALK), cameras="RING", ring_count=2,
                                  frames=FRAMES, width=SIZE, height=SIZE, python=lib_python)
    assert os.path.getmtime(out / "walk_ring00" / "frames.npy") == stamp


def test_cancel_keeps_finished_clips_only(example_scene, lib_python, tmp_path):
    from blender_addon.bl.dataset import DatasetOptions, DatasetWriter

    scene, _ = example_scene
    out = tmp_path / "data"
    writer = DatasetWriter(scene, DatasetOptions(out_dir=str(out), motions=[str(WALK)], cameras="RING", ring_count=3,
                                                 frames=2, width=32, height=32, python=lib_python))
    seen = []
    for fraction, status in writer.steps():
        seen.append(fraction)
        if status.startswith("walk_ring01: frame 1/2"):
            writer.cancel()
    assert writer.written == [str(out / "walk_ring00")]
    assert sorted(os.listdir(out)) == ["walk_ring00"]  # the unfinished clip is gone
    assert seen == sorted(seen) and max(seen) < 0.67
    assert not [o for o in scene.objects if o.name.startswith("ring")]


def test_panel_button_and_refused_options(addon, draw_panels, tmp_path):
    from blender_addon.bl import dataset_ui

    scene = bpy.context.scene
    import types

    log = []
    from conftest import _Layout

    dataset_ui.MIMO_PT_dataset.draw(types.SimpleNamespace(layout=_Layout(log)), types.SimpleNamespace(scene=scene))
    ops = [(a[0], k.get("text")) for n, a, k in log if n == "operator"]
    assert ("mimo.make_dataset", "Make Training Dataset…") in ops
    assert dataset_ui.MIMO_PT_dataset.bl_parent_id == "MIMO_PT_main"
    for cameras, engine, extra in (("RING", "CYCLES", {"ring_count", "ring_elevation", "samples"}),
                                   ("SCENE", "WORKBENCH", set())):  # the button's dialog
        log.clear()
        dialog = types.SimpleNamespace(layout=_Layout(log), cameras=cameras, engine=engine)
        dataset_ui.MIMO_OT_make_dataset.draw(dialog, bpy.context)
        drawn = {a[1] for n, a, k in log if n == "prop"}
        assert drawn == {"directory", "motions", "cameras", "frames", "width", "height", "engine", "occlusion",
                         "reference", "python", "overwrite"} | extra

    kw = dict(directory=str(tmp_path / "d"), cameras="RING", frames=2, width=64, height=64)
    with pytest.raises(RuntimeError, match="exactly one MIMO body in the scene"):
        bpy.ops.mimo.make_dataset(**kw)
    assert "exactly one MIMO body" in dataset_ui.STATE["error"]
    assert bpy.ops.mimo.add_body() == {"FINISHED"}
    with pytest.raises(RuntimeError, match="width: expected a multiple of 8"):
        bpy.ops.mimo.make_dataset(**{**kw, "width": 100})
    with pytest.raises(RuntimeError, match="motions: .*nothing.npz does not exist"):
        bpy.ops.mimo.make_dataset(**kw, motions=str(tmp_path / "nothing.npz"))
    with pytest.raises(RuntimeError, match="Library Python: .* is not a file"):
        bpy.ops.mimo.make_dataset(**kw, python=str(tmp_path / "no_python"))
    with pytest.raises(RuntimeError, match="no camera"):
        bpy.ops.mimo.make_dataset(**{**kw, "cameras": "SHOT"})
    assert not (tmp_path / "d").exists()  # refused before anything was written


def test_scene_animation_through_the_shot_camera_keeps_the_users_action(example_scene, lib_python, tmp_path):
    scene, rig = example_scene
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.mimo.import_motion(filepath=str(WALK)) == {"FINISHED"}  # the user's own animation
    scene.frame_end = scene.frame_start + 1
    action = rig.animation_data.action
    assert bpy.ops.mimo.add_camera() == {"FINISHED"}  # at (0, -4, 1), facing the body
    scene.frame_set(2)
    pose = [pb.matrix_basis.copy() for pb in rig.pose.bones]
    out = tmp_path / "data"
    assert bpy.ops.mimo.make_dataset(directory=str(out), motions="", cameras="SHOT", frames=0, width=32,
                                     height=48, occlusion=False, python=lib_python) == {"FINISHED"}
    meta, a = _clip(out / "scene_MIMO_Camera")
    assert a["frames"].shape == (2, 48, 32, 3) and "occlusion" not in a  # the scene range, 2 frames
    assert meta["blender"]["frames"] == [1, 2] and meta["blender"]["camera"] == "MIMO Camera"
    assert a["codes"].any(-1).mean() > 0.05
    assert rig.animation_data.action == action and scene.frame_current == 2
    assert all(a == pb.matrix_basis for a, pb in zip(pose, rig.pose.bones))


def test_a_character_that_does_not_follow_the_rig_is_warned_about(example_scene, lib_python, tmp_path):
    from blender_addon.bl.dataset import DatasetOptions, DatasetWriter

    scene, rig = example_scene
    bpy.data.objects[rig["mimo_mesh"]].hide_render = True  # the body itself is not seen ...
    bpy.ops.mesh.primitive_cube_add(size=0.3, location=(0.8, 0.0, 1.0))  # ... but a box beside it
    bpy.context.active_object.parent = rig
    writer = DatasetWriter(scene, DatasetOptions(out_dir=str(tmp_path / "d"), motions=[str(WALK)], cameras="RING",
                                                 ring_count=1, frames=1, width=32, height=32, reference=False,
                                                 python=lib_python))
    for _ in writer.steps():
        pass
    meta = json.loads((tmp_path / "d" / "walk_ring00" / "meta.json").read_text())
    assert meta["blender"]["overlap"] < 0.2 and meta["characters"] == []
    assert len(writer.warnings) == 1 and "does the character follow the MIMO rig?" in writer.warnings[0]
