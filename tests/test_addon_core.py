"""The add-on's bpy-free core: axes, rotations, cameras (analytic cases), rig read-back math,
frame bookkeeping, PNG writing, motion files, requests. Runs without Blender."""
from __future__ import annotations

import ast
import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blender_addon.core import axes, camera, frames, motion_io, png, rig  # noqa: E402
from blender_addon.core.smplh import JOINT_NAMES, PARENTS  # noqa: E402
from blender_addon.vendor import rotations as rot  # noqa: E402  (the add-on uses the vendored ones)

CORE = ROOT / "blender_addon" / "core"


def _random_rotations(rng, n):
    aa = rng.normal(size=(n, 3))
    aa *= (rng.uniform(0.05, 3.0, size=(n, 1)) / np.linalg.norm(aa, axis=1, keepdims=True))
    return aa


# --- the boundary ---------------------------------------------------------------------------------
def test_core_never_imports_bpy_or_mathutils():
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in ("bpy", "mathutils", "bpy_extras", "torch"), f"{path.name}: {n}"
    code = ("import sys; sys.path.insert(0, %r)\n" % str(ROOT)
            + "".join(f"import blender_addon.core.{p.stem}\n" for p in CORE.glob("*.py"))
            + "bad = [m for m in ('bpy', 'mathutils', 'torch', 'zmq') if m in sys.modules]\n"
            + "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# --- axes -------------------------------------------------------------------------------------------
def test_axes_known_directions_and_round_trip():
    # Blender up (+Z) is wire up (+Y); the SMPL body faces +Z on the wire = Blender's -Y (front view)
    assert np.allclose(axes.points_blender_to_wire([0, 0, 1]), [0, 1, 0])
    assert np.allclose(axes.points_wire_to_blender([0, 0, 1]), [0, -1, 0])
    assert np.allclose(axes.points_blender_to_wire([1, 0, 0]), [1, 0, 0])
    rng = np.random.default_rng(0)
    p = rng.normal(size=(5, 7, 3))
    assert np.allclose(axes.points_wire_to_blender(axes.points_blender_to_wire(p)), p, atol=1e-15)
    R = rot.axis_angle_to_matrix(_random_rotations(rng, 9))
    Rw = axes.rotations_blender_to_wire(R)
    assert np.allclose(axes.rotations_wire_to_blender(Rw), R, atol=1e-15)
    # a rotated point converts the same either way round
    q = rng.normal(size=(9, 3))
    assert np.allclose(np.einsum("nij,nj->ni", Rw, axes.points_blender_to_wire(q)),
                       axes.points_blender_to_wire(np.einsum("nij,nj->ni", R, q)))
    assert np.isclose(np.linalg.det(axes.BLENDER_TO_WIRE), 1.0)
    with pytest.raises(ValueError, match="points"):
        axes.points_blender_to_wire(np.zeros((4, 2)))


# --- rotations ----------------------------------------------------------------------------------------
def test_rotations_match_rodrigues_facts_and_invert():
    rng = np.random.default_rng(1)
    aa = _random_rotations(rng, 200)
    R = rot.axis_angle_to_matrix(aa)
    assert np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(R), 1.0)
    assert np.allclose(np.einsum("nij,nj->ni", R, aa), aa)  # the axis is fixed
    angle = np.linalg.norm(aa, axis=1)
    assert np.allclose(np.trace(R, axis1=1, axis2=2), 1 + 2 * np.cos(angle))
    assert np.allclose(rot.matrix_to_axis_angle(R), aa, atol=1e-9)
    q = rot.axis_angle_to_quaternion(aa)
    assert np.allclose(rot.quaternion_to_matrix(q), R, atol=1e-12)
    assert np.allclose(rot.quaternion_to_matrix(-q), R, atol=1e-12)
    # 90 degrees about z turns x into y
    assert np.allclose(rot.axis_angle_to_matrix([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0])
    tiny = np.array([1e-9, -2e-9, 3e-9])
    assert np.allclose(rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(tiny)), tiny, atol=1e-15)


# --- cameras (analytic; the comparison with Blender's own projection is in tests/blender) ---------------
def test_default_camera_intrinsics_are_blenders_defaults():
    lens = camera.BlenderLens()  # 50 mm, 36 mm sensor, 1920x1080, AUTO fit
    K = camera.intrinsics(lens)
    assert np.allclose(K, [[50 / 36 * 1920, 0, 960], [0, 50 / 36 * 1920, 540], [0, 0, 1]])
    # 50 % keeps the field of view at half the pixels
    lens.resolution_percentage = 50
    assert lens.render_size() == (960, 540)
    assert np.allclose(camera.intrinsics(lens), np.diag([0.5, 0.5, 1]) @ K)


def test_sensor_fit_shift_and_pixel_aspect():
    portrait = camera.BlenderLens(resolution_x=600, resolution_y=800, sensor_width=36, sensor_height=20)
    K = camera.intrinsics(portrait)  # AUTO on a tall image fits the sensor width to the height
    assert np.isclose(K[0, 0], 50 / 36 * 800) and np.isclose(K[1, 1], 50 / 36 * 800)
    vert = camera.BlenderLens(resolution_x=800, resolution_y=600, sensor_fit="VERTICAL", sensor_height=24)
    assert np.isclose(camera.intrinsics(vert)[1, 1], 50 / 24 * 600)
    horiz = camera.BlenderLens(resolution_x=600, resolution_y=800, sensor_fit="HORIZONTAL")
    assert np.isclose(camera.intrinsics(horiz)[0, 0], 50 / 36 * 600)
    shifted = camera.BlenderLens(resolution_x=800, resolution_y=600, shift_x=0.1, shift_y=-0.05)
    Ks = camera.intrinsics(shifted)  # shift is a fraction of the fitted (larger) side; +y moves up
    assert np.isclose(Ks[0, 2], 400 - 80) and np.isclose(Ks[1, 2], 300 - 40)
    wide_pixels = camera.BlenderLens(resolution_x=800, resolution_y=600, pixel_aspect_x=1, pixel_aspect_y=2)
    Kp = camera.intrinsics(wide_pixels)
    assert np.isclose(Kp[1, 1], Kp[0, 0] / 2)
    with pytest.raises(ValueError, match="sensor_fit"):
        camera.intrinsics(camera.BlenderLens(sensor_fit="DIAGONAL"))
    with pytest.raises(ValueError, match="camera type"):
        camera.intrinsics(camera.BlenderLens(type="ORTHO"))


def test_extrinsics_of_a_camera_looking_at_the_origin():
    # Blender camera at (0, -5, 1) with rotation_euler (90°, 0, 0) looks along +Y (Blender)
    M = np.eye(4)
    M[:3, :3] = rot.axis_angle_to_matrix([np.pi / 2, 0, 0])
    M[:3, 3] = [0, -5, 1]
    R, t = camera.extrinsics(M)
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1)
    # the Blender point (0, 0, 1) lies 5 m straight ahead; Blender (1, 0, 1) lies to the right
    ahead = R @ axes.points_blender_to_wire([0, 0, 1]) + t
    right = R @ axes.points_blender_to_wire([1, 0, 1]) + t
    up = R @ axes.points_blender_to_wire([0, 0, 2]) + t
    assert np.allclose(ahead, [0, 0, 5]) and np.allclose(right, [1, 0, 5]) and np.allclose(up, [0, -1, 5])
    K = camera.intrinsics(camera.BlenderLens(resolution_x=640, resolution_y=480))
    uv = camera.project(K, R, t, axes.points_blender_to_wire(np.array([[0, 0, 1.0]])))
    assert np.allclose(uv, [[320, 240]])  # the image centre: the corner between 4 pixels
    # scale on the object is ignored
    M2 = M.copy()
    M2[:3, :3] *= 3
    assert np.allclose(camera.extrinsics(M2)[0], R)


def test_wire_cameras_turn_into_blender_settings_and_back_exactly():
    """Import Camera's inverses: matrix_world_of undoes extrinsics, lens_of_intrinsics undoes
    intrinsics (off-centre principal points, portrait and landscape, non-square pixels)."""
    rng = np.random.default_rng(4)
    R = rot.axis_angle_to_matrix(rng.normal(size=(6, 3)))
    t = rng.normal(size=(6, 3)) * 3
    R2, t2 = camera.extrinsics(camera.matrix_world_of(R, t))
    assert np.abs(R2 - R).max() < 1e-12 and np.abs(t2 - t).max() < 1e-12
    M = camera.matrix_world_of(R[0], t[0])
    assert np.allclose(M[:3, :3] @ M[:3, :3].T, np.eye(3)) and M[3].tolist() == [0, 0, 0, 1]
    for (w, h), (fx, fy), (cx, cy) in (((640, 360), (500, 500), (300, 200)), ((360, 640), (420, 380), (190, 330)),
                                       ((96, 96), (1875, 1875), (48, 48)), ((100, 60), (80, 96), (55.5, 20))):
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        lens = camera.lens_of_intrinsics(K, w, h)
        assert lens.render_size() == (w, h) and min(lens.pixel_aspect_x, lens.pixel_aspect_y) == 1.0
        assert np.abs(camera.intrinsics(lens) - K).max() < 1e-9
    with pytest.raises(ValueError, match="pinhole"):
        camera.lens_of_intrinsics(np.array([[500, 3, 320], [0, 500, 240], [0, 0, 1.0]]), 640, 480)


def test_crop_to_multiple_of_8_keeps_pixels_where_they_were():
    K = camera.intrinsics(camera.BlenderLens(resolution_x=645, resolution_y=483))
    K2, w, h = camera.crop_to_multiple(K, 645, 483)
    assert (w, h) == (640, 480)
    assert np.isclose(K2[0, 2], K[0, 2] - 2.5) and np.isclose(K2[1, 2], K[1, 2] - 1.5)
    assert np.isclose(K2[0, 0], K[0, 0])


# --- rig read-back math -----------------------------------------------------------------------------------
def _bone_rests(rng, J):
    return rot.axis_angle_to_matrix(_random_rotations(rng, J))


def test_smplh_table():
    assert len(JOINT_NAMES) == len(PARENTS) == 52
    assert JOINT_NAMES[20] == "left_wrist" and JOINT_NAMES[22] == "left_index1"
    assert PARENTS[22] == 20 and PARENTS[23] == 22 and PARENTS[37] == 21
    assert all(p < j for j, p in enumerate(PARENTS))


def test_pose_quaternions_round_trip_and_fk_matches_smpl():
    rng = np.random.default_rng(2)
    F, J = 4, 52
    aa = _random_rotations(rng, F * J).reshape(F, J, 3)
    B = _bone_rests(rng, J)
    q = rig.pose_to_quaternions(aa, B)
    assert np.abs(rig.quaternions_to_pose(q, B) - aa).max() < 1e-10
    # independent check: Blender's pose-bone chain P_j = P_p B_p^T B_j Q_j (armature space) must
    # rotate bones exactly as SMPL's chain G_j = G_p R_j does on the wire
    Q = rot.quaternion_to_matrix(q)
    R = rot.axis_angle_to_matrix(aa)
    C = axes.BLENDER_TO_WIRE
    for f in range(F):
        P, G = [None] * J, [None] * J
        for j, p in enumerate(PARENTS):
            P[j] = (B[j] if p < 0 else P[p] @ B[p].T @ B[j]) @ Q[f, j]
            G[j] = R[f, j] if p < 0 else G[p] @ R[f, j]
            world_delta_blender = P[j] @ B[j].T
            assert np.allclose(C @ world_delta_blender @ C.T, G[j], atol=1e-10)


def test_quaternions_are_sign_continuous():
    rng = np.random.default_rng(3)
    aa = np.cumsum(rng.normal(scale=0.4, size=(30, 1, 3)), axis=0)
    q = rig.pose_to_quaternions(aa, np.eye(3)[None])
    assert np.all(np.sum(q[1:] * q[:-1], axis=-1) >= 0)


def test_root_translation_and_object_transform():
    rng = np.random.default_rng(4)
    B0 = _bone_rests(rng, 1)[0]
    t = rng.normal(size=(5, 3))
    loc = rig.transl_to_root_location(t, B0)
    # the pose bone's location moves the head by B0 @ loc in armature (Blender) space
    assert np.allclose(axes.points_blender_to_wire(loc @ B0.T), t)
    assert np.allclose(rig.root_location_to_transl(loc, B0), t)
    # object transform: SMPL placement of a vertex must equal object(armature placement)
    go = _random_rotations(rng, 5)
    J0 = np.array([0.0, 0.9, 0.05])
    M = np.eye(4)
    M[:3, :3] = rot.axis_angle_to_matrix([0.3, -0.2, 1.1])
    M[:3, 3] = [1.0, 2.0, -0.5]
    go2, t2 = rig.apply_object_transform(go, t, J0, M)
    v = np.array([0.2, 1.4, 0.1])
    for f in range(5):
        arm = rot.axis_angle_to_matrix(go[f]) @ (v - J0) + J0 + t[f]          # armature space, wire axes
        world_b = M[:3, :3] @ axes.points_wire_to_blender(arm) + M[:3, 3]
        smpl = rot.axis_angle_to_matrix(go2[f]) @ (v - J0) + J0 + t2[f]
        assert np.allclose(axes.points_blender_to_wire(world_b), smpl)
    M[:3, :3] *= 2
    with pytest.raises(ValueError, match="scale"):
        rig.apply_object_transform(go, t, J0, M)


def test_split_and_join_smplh():
    rng = np.random.default_rng(5)
    aa = rng.normal(size=(3, 52, 3))
    parts = rig.split_smplh(aa)
    assert parts["body_pose"].shape == (3, 21, 3) and parts["left_hand_pose"].shape == (3, 15, 3)
    assert np.array_equal(rig.join_smplh(**parts), aa)
    smpl = rig.join_smplh(aa[:, 0], rng.normal(size=(3, 23, 3)))
    assert np.all(smpl[:, 22:] == 0)
    with pytest.raises(ValueError, match="body_pose"):
        rig.join_smplh(aa[:, 0], np.zeros((3, 20, 3)))


# --- frames, PNG ---------------------------------------------------------------------------------------------
def test_frame_range_and_job_dirs_never_overwrite(tmp_path):
    fr = frames.FrameRange.from_scene_values(10, 20, 3, 24, 1.001)
    assert fr.scene_frames == [10, 13, 16, 19] and len(fr) == 4
    assert fr.wire_index(16) == 2 and np.isclose(fr.fps, 24 / 1.001 / 3)
    with pytest.raises(ValueError, match="scene_frame"):
        fr.wire_index(17)
    assert frames.sanitize("../../etc/passwd shot 1") == "etc_passwd_shot_1"
    assert frames.sanitize("...") == "job"
    a = frames.new_job_dir(str(tmp_path), "My Shot!")
    (pathlib.Path(a) / "mine.png").write_bytes(b"user data")
    b = frames.new_job_dir(str(tmp_path), "My Shot!")
    assert a != b and os.path.basename(b) == "My_Shot_001"
    assert (pathlib.Path(a) / "mine.png").read_bytes() == b"user data"
    p = frames.frame_path(b, 7)
    png.write_png(p, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileExistsError):
        png.write_png(p, np.zeros((8, 8, 3), np.uint8))


def test_png_decodes_to_the_same_pixels():
    from PIL import Image

    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, size=(13, 21, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(png.encode_png(img))).convert("RGB"))
    assert np.array_equal(back, img)
    with pytest.raises(ValueError, match="image"):
        png.encode_png(np.zeros((4, 4), np.uint8))


# --- motion files (through the vendored mimo.motion readers) -------------------------------------
def test_amass_turns_z_up_into_y_up_about_the_rig_pelvis(tmp_path):
    rng = np.random.default_rng(7)
    F = 6
    poses = rng.normal(scale=0.3, size=(F, 156))
    trans = rng.normal(size=(F, 3))
    path = tmp_path / "clip.npz"
    np.savez(path, poses=poses, trans=trans, mocap_framerate=np.float64(60.0), betas=np.zeros(16))
    joints = np.zeros((52, 3))
    J0 = joints[0] = [0.0, 0.2, 0.0]
    clip = motion_io.read_motion(str(path), rest_joints=joints)
    aa, transl = motion_io.clip_to_rig(clip, 60.0)
    assert clip.fps == 60.0 and aa.shape == (F, 52, 3)
    assert np.allclose(aa[:, 1:22].reshape(F, 63), poses[:, 3:66])
    assert np.allclose(aa[:, 37:52].reshape(F, 45), poses[:, 111:156])
    # a vertex placed by SMPL in the Z-up file, turned to Y-up, equals the converted placement
    Rz = axes.BLENDER_TO_WIRE  # AMASS Z-up -> Y-up is the same turn as Blender -> wire
    v = np.array([0.1, 0.5, 0.3])
    for f in range(F):
        zup = rot.axis_angle_to_matrix(poses[f, :3]) @ (v - J0) + J0 + trans[f]
        yup = rot.axis_angle_to_matrix(aa[f, 0]) @ (v - J0) + J0 + transl[f]
        assert np.allclose(Rz @ zup, yup)
    # 60 -> 30 fps keeps every other frame exactly
    aa2, t2 = motion_io.clip_to_rig(clip, 30.0)
    assert aa2.shape == (3, 52, 3) and np.allclose(aa2, aa[::2], atol=1e-9) and np.allclose(t2, transl[::2])


def test_mimo_clip_format_round_trip(tmp_path):
    from blender_addon.vendor import clip as C

    rng = np.random.default_rng(8)
    F = 4
    body = C.BodyTrack(global_orient=rng.normal(scale=0.3, size=(F, 3)), body_pose=rng.normal(scale=0.3, size=(F, 21, 3)),
                       transl=rng.normal(size=(F, 3)), betas=np.zeros(6))
    C.save_npz(tmp_path / "c.npz", C.MotionClip(fps=25.0, bodies=[body]))
    aa, transl = motion_io.clip_to_rig(motion_io.read_motion(str(tmp_path / "c.npz")), 25.0)
    assert np.allclose(aa[:, 0], body.global_orient, atol=1e-6) and np.allclose(transl, body.transl)
    assert np.allclose(aa[:, 1:22], body.body_pose, atol=1e-6) and np.all(aa[:, 22:] == 0)


def test_smpl_pickle_is_read_without_running_code(tmp_path):
    import pickle

    rng = np.random.default_rng(9)
    F = 3
    mats = rot.axis_angle_to_matrix(rng.normal(scale=0.5, size=(F, 23, 3)))
    go = rot.axis_angle_to_matrix(rng.normal(scale=0.5, size=(F, 1, 3)))
    with open(tmp_path / "p.pkl", "wb") as f:
        pickle.dump({"global_orient": go, "body_pose": mats, "betas": np.zeros((F, 10))}, f)
    aa, _ = motion_io.clip_to_rig(motion_io.read_motion(str(tmp_path / "p.pkl"), fps=30.0), 30.0)
    assert np.allclose(rot.axis_angle_to_matrix(aa[:, 1:22]), mats[:, :21], atol=1e-9)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"global_orient": Evil()}, f)
    with pytest.raises(ValueError, match="only numpy"):
        motion_io.read_motion(str(tmp_path / "evil.pkl"))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="neither"):
        motion_io.read_motion(str(tmp_path / "other.npz"))


def test_rig_joint_matching_by_name_for_the_smpl_family():
    rng = np.random.default_rng(10)
    aa = rng.normal(size=(2, 52, 3))
    smpl_names = list(JOINT_NAMES[:22]) + ["left_hand", "right_hand"]
    smplx_names = list(JOINT_NAMES[:22]) + ["jaw", "left_eye_smplhf", "right_eye_smplhf"] + list(JOINT_NAMES[22:])
    for names, kind, body_joints in ((smpl_names, "smpl", 23), (smplx_names, "smplx", 21),
                                     (list(JOINT_NAMES), "open", 21)):
        on_rig = rig.smplh_to_rig(aa, names)
        assert on_rig.shape == (2, len(names), 3)
        p = rig.rig_to_params(on_rig, names, kind)
        assert p["body_pose"].shape == (2, body_joints, 3)
        assert np.array_equal(p["global_orient"], aa[:, 0]) and np.array_equal(p["body_pose"][:, :21], aa[:, 1:22])
        has_fingers = "left_index1" in names
        assert ("left_hand_pose" in p) == has_fingers
        if has_fingers:
            assert np.array_equal(p["right_hand_pose"], aa[:, 37:52]) and np.array_equal(p["smplh"], aa)
    assert np.all(rig.smplh_to_rig(aa, smplx_names)[:, 22:25] == 0)  # jaw and eyes stay still
    with pytest.raises(ValueError, match="lacks"):
        rig.rig_to_params(np.zeros((1, 3, 3)), ["pelvis", "left_hip", "right_hip"], "open")


def test_output_size_keeps_the_aspect():
    from blender_addon.core import camera as cam

    assert cam.aspect_crop(1920, 1080, 512, 512) == (420.0, 0.0, 1080.0, 1080.0)  # sides cut
    assert cam.aspect_crop(1080, 1920, 512, 512) == (0.0, 420.0, 1080.0, 1080.0)  # top and bottom
    assert cam.output_size(1920, 1080, 0, 0) == (1920, 1080)
    assert cam.output_size(1921, 1083, 0, 0) == (1920, 1080)
    assert cam.output_size(1920, 1080, 512, 0) == (512, 288)
    assert cam.output_size(1920, 1080, 0, 288) == (512, 288)
    K = np.array([[1000.0, 0, 960], [0, 1000.0, 540], [0, 0, 1]])
    K2 = cam.crop_and_scale(K, 1920, 1080, 512, 512)
    assert K2[0, 0] == pytest.approx(K2[1, 1]) and K2[0, 2] == pytest.approx(256) and K2[1, 2] == pytest.approx(256)
    assert "cropped to 1080x1080 (sides cut)" in cam.describe_output(1920, 1080, 512, 512)
    with pytest.raises(ValueError, match="size"):
        cam.aspect_crop(0, 1080, 512, 512)


def test_fit_pose_recovers_rotations_and_reports_what_it_cannot():
    from blender_addon.core import evaluated
    from blender_addon.vendor import rotations as rot

    rng = np.random.default_rng(3)
    parents = [-1, 0, 1, 1]
    heads = np.array([[0, 0, 0], [0, 0.3, 0], [0.2, 0.5, 0], [-0.2, 0.5, 0.1]])
    B = rot.axis_angle_to_matrix(rng.normal(size=(4, 3)))
    rest = np.tile(np.eye(4), (4, 1, 1))
    rest[:, :3, :3], rest[:, :3, 3] = B, heads
    Q = rot.axis_angle_to_matrix(rng.normal(scale=0.5, size=(2, 4, 3)))
    L = rng.normal(size=(2, 3))
    pose = np.tile(np.eye(4), (2, 4, 1, 1))  # Blender's rule: parent @ rest_p^-1 @ rest_j @ basis
    for f in range(2):
        for j, p in enumerate(parents):
            basis = np.eye(4)
            basis[:3, :3] = Q[f, j]
            if p < 0:
                basis[:3, 3] = L[f]
                pose[f, j] = rest[j] @ basis
            else:
                pose[f, j] = pose[f, p] @ np.linalg.inv(rest[p]) @ rest[j] @ basis
    fit = evaluated.fit_pose(pose, rest, parents)
    assert np.abs(rot.quaternion_to_matrix(fit.quaternions) - Q).max() < 1e-9
    assert np.abs(fit.root_location - L).max() < 1e-9 and fit.residual.max() < 1e-9
    names = ["root", "spine", "left", "right"]
    assert evaluated.describe_issue(fit, names, [1, 2], "Body") == ""
    pose[:, 1, :3, :3] *= 1.5  # a scaled bone; its children follow it
    for j in (2, 3):
        pose[:, j] = pose[:, 1] @ np.linalg.inv(rest[1]) @ rest[j]
    fit = evaluated.fit_pose(pose, rest, parents)
    msg = evaluated.describe_issue(fit, names, [1, 2], "Body")
    assert msg.startswith("Body: bone 'spine' is scaled or stretched (+50% at frame 1)")
    assert f"up to {1000 * fit.residual.max():.0f} mm off" in msg and fit.residual.max() > 0.05


def test_only_the_preview_backend_goes_without_a_character_image():
    from blender_addon.core.request import GenerateSettings

    GenerateSettings(backend="preview", character="").validate()
    with pytest.raises(ValueError, match="^character: choose a reference image"):
        GenerateSettings(backend="mimo", character="").validate()


def test_roi_size_rule_is_the_servers_and_a_set_size_is_checked():
    from blender_addon.core.request import GenerateSettings, auto_roi_size, check_roi_size
    from mimo.pipeline.prepare import roi_size_for

    for w, h in [(64, 48), (8, 8), (100, 30), (513, 200), (640, 784), (785, 100), (1920, 1080), (2048, 8)]:
        assert auto_roi_size(w, h) == roi_size_for((w, h)), (w, h)  # what the server picks when unset
    assert auto_roi_size(1920, 1080) == 784 and auto_roi_size(64, 48) == 64 and auto_roi_size(300, 90) == 304
    check_roi_size(512)
    check_roi_size(1024, max_side=1024)
    for bad, max_side in [(500, 0), (56, 0), (2056, 0), (1032, 1024)]:
        with pytest.raises(ValueError, match=r"^ROI size: expected a multiple of 8 in 64\.\."):
            check_roi_size(bad, max_side)
    with pytest.raises(ValueError, match="^ROI size"):
        GenerateSettings(roi_size=100).validate()


def test_openpose_keypoints_layout_and_what_is_not_seen():
    from blender_addon.vendor import keypoints

    K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    R, t = np.eye(3), np.zeros(3)
    joints = {"pelvis": [0.0, 0.0, 2.0], "right_wrist": [10.0, 0.0, 2.0], "left_wrist": [0.1, 0.0, -1.0],
              "left_index1": [0.02, 0.04, 1.0]}
    frame = keypoints.openpose_frame([joints], K, R, t, 64, 48)
    assert (frame["canvas_width"], frame["canvas_height"]) == (64, 48)
    body = np.array(frame["people"][0]["pose_keypoints_2d"]).reshape(25, 3)
    assert body[8].tolist() == [31.5, 23.5, 1.0]  # pelvis = MidHip, pixel centres on integers
    assert body[4].tolist() == [0.0, 0.0, 0.0]  # right wrist outside the image
    assert body[7].tolist() == [0.0, 0.0, 0.0]  # left wrist behind the camera
    assert body[0].tolist() == [0.0, 0.0, 0.0]  # no nose joint in the body
    hand = np.array(frame["people"][0]["hand_left_keypoints_2d"]).reshape(21, 3)
    assert hand[5].tolist() == [33.5, 27.5, 1.0]  # index MCP
    assert keypoints.hand_21("right")[:3] == ["right_wrist", "right_thumb1", "right_thumb2"]


def test_read_png_reads_the_add_ons_own_frames_only(tmp_path):
    from PIL import Image

    a = np.random.default_rng(5).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    png.write_png(str(tmp_path / "f.png"), a)
    assert np.array_equal(png.read_png(str(tmp_path / "f.png")), a)
    Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA").save(tmp_path / "rgba.png")
    with pytest.raises(ValueError, match="expected 8-bit RGB"):
        png.read_png(str(tmp_path / "rgba.png"))
