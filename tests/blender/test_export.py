"""Export Passes: body parameters with OpenCV cameras (shot.npz) and the visible-body mask per
frame, from the 3D scene, in a new folder."""
from __future__ import annotations

import os
import pathlib

import bpy
import numpy as np

from blender_addon.core import axes
from blender_addon.core import camera as cam


def _scene(tmp_path):
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 84, 100, 100
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    assert bpy.ops.mimo.add_body() == {"FINISHED"}
    rig = bpy.context.active_object
    bpy.ops.mimo.add_camera()
    bpy.ops.mesh.primitive_cube_add(size=0.3, location=(0.15, -1.0, 1.2))  # in front of the chest
    scene.frame_start, scene.frame_end = 1, 2
    return scene, rig, bpy.context.active_object


def _mask(path):
    img = bpy.data.images.load(path)
    try:
        w, h = img.size
        return np.array(img.pixels[:]).reshape(h, w, 4)[::-1, :, 0]
    finally:
        bpy.data.images.remove(img)


def _read_png(path, bits, channels):
    """An unfiltered PNG of ``bits`` per sample (what the pass images are), decoded here, not by
    the writer's module. Shapes: -> (H, W, channels) int64"""
    import struct
    import zlib

    data = pathlib.Path(path).read_bytes()
    pos, idat = 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            W, H, depth, kind = struct.unpack(">IIBB", body[:10])
            assert (depth, kind) == (bits, {1: 0, 3: 2}[channels])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(H, -1)
    assert not rows[:, 0].any()
    samples = rows[:, 1:].copy().view(">u2" if bits == 16 else np.uint8)
    return samples.reshape(H, W, channels).astype(np.int64)


def test_export_passes_writes_parameters_cameras_and_body_masks(addon, tmp_path):
    from blender_addon.bl import operators

    scene, rig, box = _scene(tmp_path)
    assert bpy.ops.mimo.export_passes() == {"FINISHED"}
    folder = tmp_path / "mimo" / "shot_passes"
    assert scene.mimo.passes_dir == str(folder)
    # the entries mimo export writes too (tests/test_codes_passes.py)
    assert sorted(os.listdir(folder)) == ["depth", "depth.npy", "keypoints", "mask", "normal", "normal.npy",
                                          "shot.npz"]
    assert sorted(os.listdir(folder / "mask")) == ["frame_00000.png", "frame_00001.png"]
    z = np.load(folder / "shot.npz")
    shot = operators.collect_shot(scene)
    for k in ("K", "R", "t"):
        assert np.allclose(z[k], shot["track"][k])
    assert (int(z["width"]), int(z["height"])) == (80, 96) and list(z["frames"]) == [1, 2]
    assert str(z["body_model"]) == "open" and z["body0_body_pose"].shape == (2, 21, 3)
    betas = shot["bodies"][0]["betas"]  # per frame, as mimo export writes a clip's
    assert z["body0_betas"].shape == (2, len(betas)) and np.allclose(z["body0_betas"], betas)
    assert np.allclose(z["body0_transl"], shot["bodies"][0]["transl"], atol=1e-6)

    m = _mask(str(folder / "mask" / "frame_00000.png"))
    assert m.shape == (96, 80) and set(np.unique(np.round(m, 3))) <= {0.0, 1.0}
    K, R, t = z["K"][0], z["R"][0], z["t"][0]
    px = lambda p: cam.project(K, R, t, axes.points_blender_to_wire(np.array([p])))[0].astype(int)  # noqa: E731
    u, v = px([-0.12, 0.0, rig.location.z])  # the belly, beside the box: the body is seen
    assert m[v, u] == 1.0
    u, v = px(list(box.location))  # the box hides the chest behind it
    assert m[v, u] == 0.0 and m[2, 2] == 0.0

    # OpenPose keypoints: Blender's evaluated joints through the exported cameras
    import json

    kp = json.loads((folder / "keypoints" / "frame_00001.json").read_text())
    assert (kp["canvas_width"], kp["canvas_height"]) == (80, 96)
    (person,) = kp["people"]
    assert person["face_keypoints_2d"] == []  # no facial landmarks (vendor/keypoints.py says why)
    body = np.array(person["pose_keypoints_2d"]).reshape(25, 3)
    assert body[0, 2] == 0.0 and body[8, 2] == 1.0  # a nose the body lacks; its pelvis (MidHip)
    scene.frame_set(2)
    wrist = rig.matrix_world @ rig.pose.bones["right_wrist"].head
    u, v = cam.project(z["K"][1], z["R"][1], z["t"][1], axes.points_blender_to_wire(np.array([list(wrist)])))[0]
    assert np.allclose(body[4], [u - 0.5, v - 0.5, 1.0], atol=1e-4)  # (OpenPose: pixel i centred on i)
    hand = np.array(person["hand_left_keypoints_2d"]).reshape(21, 3)
    assert hand[0, 2] == 1.0 and hand[4, 2] == 0.0  # wrist; a fingertip the body lacks
    # depth and normals: the box's front face is 4 - 1.15 m from the camera, facing it
    depth, normal = np.load(folder / "depth.npy"), np.load(folder / "normal.npy")
    assert depth.shape == (2, 96, 80) and normal.shape == (2, 96, 80, 3)
    u, v = px(list(box.location))
    assert abs(depth[0, v, u] - 2.85) < 1e-4 and np.allclose(normal[0, v, u], [0, 0, -1], atol=1e-5)
    assert depth[0, 2, 2] == 0.0 and not normal[0, 2, 2].any()  # nothing there
    assert depth[0][m > 0.5].min() > 2.85  # the body is behind the box
    for f in range(2):  # the same as images: 16-bit millimetres, 8-bit RGB view-space normal map
        mm = _read_png(folder / "depth" / f"frame_{f:05d}.png", bits=16, channels=1)[..., 0]
        assert np.array_equal(mm, np.round(depth[f].astype(np.float64) * 1000))
        rgb = _read_png(folder / "normal" / f"frame_{f:05d}.png", bits=8, channels=3)
        seen = normal[f].any(axis=-1)
        assert not rgb[~seen].any()
        assert np.abs(rgb[seen] / 127.5 - 1 - normal[f][seen] * [1, -1, -1]).max() <= 1 / 127.5
    assert _read_png(folder / "normal" / "frame_00000.png", 8, 3)[v, u].tolist() == [128, 128, 255]
    assert bpy.ops.mimo.export_passes() == {"FINISHED"}  # again: a new folder, nothing overwritten
    assert (tmp_path / "mimo" / "shot_passes_001" / "shot.npz").exists()
