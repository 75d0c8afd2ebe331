"""A decomposed clip imports into real Blender: ``tests/fixtures/decomposed_synth.npz`` is the
``motion.npz`` that ``mimo decompose``'s pipeline wrote for a synthetic clip (true keypoints
path, made by ``benchmarks/decompose_synth.py --motion-out``); Import Motion keys it onto the
open-body rig unchanged, and its camera track reads back with the add-on's vendored reader."""
from __future__ import annotations

import pathlib

import bpy
import numpy as np

from blender_addon.vendor import rotations as rot

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "decomposed_synth.npz"


def test_decomposed_motion_imports_onto_the_rig(addon):
    from blender_addon.bl import rig_builder
    from blender_addon.vendor import clip as C

    clip, camera = C.load_npz(FIXTURE)
    assert camera is not None and camera.num_frames == clip.num_frames
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = int(clip.fps), 1.0, 1
    rig = rig_builder.build_rig(rig_builder.OPEN_BODY)
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.mimo.import_motion(filepath=str(FIXTURE)) == {"FINISHED"}
    assert scene.frame_end == clip.num_frames
    frames = [1, clip.num_frames // 2, clip.num_frames]
    back = rig_builder.read_pose(rig, scene, frames)
    body = clip.bodies[0]
    idx = [f - 1 for f in frames]
    assert np.abs(rot.axis_angle_to_matrix(back["body_pose"]) - rot.axis_angle_to_matrix(body.body_pose[idx])).max() < 1e-4
    assert np.abs(back["transl"] - body.transl[idx]).max() < 1e-4


def _import_onto_a_placed_body(cursor=(0.7, -1.5, 0.2)):
    """Add Body at a moved 3-D cursor, Import Motion and Import Camera of the fixture."""
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 30, 1.0, 1
    scene.render.resolution_x, scene.render.resolution_y = 640, 480  # not the video's size
    scene.cursor.location = cursor
    assert bpy.ops.mimo.add_body() == {"FINISHED"}
    rig = bpy.context.active_object
    rig.rotation_euler = (0.0, 0.0, 0.4)  # a turned body: the camera turns with it
    assert bpy.ops.mimo.import_motion(filepath=str(FIXTURE)) == {"FINISHED"}
    assert bpy.ops.mimo.import_camera(filepath=str(FIXTURE)) == {"FINISHED"}
    return scene, rig, bpy.data.objects["MIMO Video Camera"]


def test_imported_camera_sees_the_body_like_the_video_camera(addon):
    """Blender's own projection (bpy_extras world_to_camera_view) of the rig's joints through the
    imported camera equals the npz's K, R, t applied to the same joints in the clip's world
    (the rig's placement undone), within 1e-3 px, at every frame."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix

    from blender_addon.bl.operators import FLOOR_KEY
    from blender_addon.core import axes
    from blender_addon.core import camera as core_cam
    from blender_addon.vendor import clip as C

    _, track = C.load_npz(FIXTURE)
    scene, rig, cam = _import_onto_a_placed_body()
    assert scene.camera == cam and scene.mimo.camera == cam
    assert (scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage) == (96, 96, 100)
    placement = rig.matrix_world.normalized() @ Matrix.Translation((0.0, 0.0, -rig[FLOOR_KEY]))
    to_clip = np.array([list(r) for r in placement.inverted()])
    worst = 0.0
    for f in range(track.num_frames):
        scene.frame_set(scene.frame_start + f)
        heads = [rig.matrix_world @ pb.head for pb in rig.pose.bones]
        blender = []
        for p in heads:
            x, y, _ = world_to_camera_view(scene, cam, p)
            blender.append([x * track.width, (1.0 - y) * track.height])
        pts = np.array([list(p) for p in heads])
        clip_world = axes.points_blender_to_wire(pts @ to_clip[:3, :3].T + to_clip[:3, 3])
        npz = core_cam.project(track.K[f], track.R[f], track.t[f], clip_world)
        worst = max(worst, float(np.abs(np.array(blender) - npz).max()))
        assert np.all((npz > 0) & (npz < 96))  # the body is in the picture
    print(f"worst projection difference {worst:.2e} px")
    assert worst <= 1e-3, f"{worst:.2e} px"
    # the lens is the video's: 1875 px focal on 96 px is a 36 mm sensor at 703.1 mm
    assert abs(cam.data.lens - track.K[0, 0, 0] * 36.0 / 96) < 1e-3 and cam.data.sensor_fit == "HORIZONTAL"


def test_import_camera_updates_the_camera_and_asks_before_changing_the_render_size(addon):
    scene, rig, cam = _import_onto_a_placed_body()
    scene.render.resolution_x = 200
    # again, without setting the render size: the same camera object, the size kept (and reported)
    assert bpy.ops.mimo.import_camera(filepath=str(FIXTURE), set_resolution=False) == {"FINISHED"}
    assert [o.name for o in bpy.data.objects if o.type == "CAMERA"] == ["MIMO Video Camera"]
    assert scene.render.resolution_x == 200
    # a motion file without a camera track is refused with one line
    from blender_addon.vendor import clip as C

    clip, _ = C.load_npz(FIXTURE)
    import tempfile

    path = pathlib.Path(tempfile.mkdtemp()) / "no_camera.npz"
    C.save_npz(path, clip)
    import pytest

    with pytest.raises(RuntimeError, match="no camera track"):
        bpy.ops.mimo.import_camera(filepath=str(path))


def test_a_decomposed_clip_generates_with_the_preview_backend(addon, server, tmp_path):
    """Import Motion + Import Camera of the decomposed clip, then Generate against a real
    mimo-server (preview backend): one frame per clip frame, at the video's size."""
    from shot_helpers import _pump

    from blender_addon.core.png import encode_png

    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    scene, rig, cam = _import_onto_a_placed_body()
    char = tmp_path / "character.png"
    char.write_bytes(encode_png(np.full((32, 24, 3), 180, np.uint8)))
    s = scene.mimo
    s.server, s.character, s.connect_timeout, s.job_name = server, str(char), 5.0, "decomposed"
    assert bpy.ops.mimo.generate() == {"FINISHED"}
    state, _ = _pump(scene)
    assert state == "done", scene.mimo.last_error
    job_dir = pathlib.Path(scene.mimo.job_dir)
    files = sorted(p.name for p in job_dir.iterdir())
    assert files == [f"frame_{i:05d}.png" for i in range(10)]
    img = bpy.data.images.load(str(job_dir / files[0]))
    assert tuple(img.size) == (96, 96)
    px = np.array(img.pixels[:]).reshape(96, 96, 4)
    assert px[..., :3].std() > 0  # the body is in the picture


def test_an_off_centre_wide_camera_projects_like_its_intrinsics(addon):
    """A moving camera with the principal point off the centre, a wide 160x90 image and
    fx != fy: Blender's projection of random points equals K, R, t's within 1e-3 px."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from blender_addon.bl import camera as bl_camera
    from blender_addon.core import axes
    from blender_addon.core import camera as core_cam
    from blender_addon.vendor import clip as C

    F = 5
    track = C.CameraTrack.look_at([1.5, 1.6, 4.0], [0.0, 1.0, 0.0], 160, 90, num_frames=F, fov_y_deg=40)
    K = track.K.copy()
    K[:, 0, 2] += np.linspace(-9.0, 13.0, F)  # animated shift
    K[:, 1, 2] -= 7.5
    K[:, 1, 1] *= 1.1  # non-square pixels
    K[:, :2, :2] *= np.linspace(1.0, 1.3, F)[:, None, None]  # a zoom
    t = track.t + np.linspace(0, 1, F)[:, None] * np.array([0.3, -0.1, 0.4])
    track = C.CameraTrack(K, track.R, t, 160, 90, 30.0).validate()
    scene = bpy.context.scene
    cam, warnings = bl_camera.import_camera(scene, track, list(range(1, F + 1)))
    assert warnings == []
    rng = np.random.default_rng(0)
    pts = rng.uniform([-1, 0, -1], [1, 2, 1], (50, 3))  # wire world, in front of the camera
    for f in range(F):
        scene.frame_set(1 + f)
        got = []
        for p in axes.points_wire_to_blender(pts):
            x, y, _ = world_to_camera_view(scene, cam, Vector(p))
            got.append([x * 160, (1.0 - y) * 90])
        want = core_cam.project(track.K[f], track.R[f], track.t[f], pts)
        assert np.abs(np.array(got) - want).max() <= 1e-3
