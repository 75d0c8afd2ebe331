"""Retargeting: known answers (self-retarget, A-pose rest, turned/Z-up/cm sources), presets,
auto-detection, BVH round trip, and the add-on vendoring constraint (numpy + stdlib only)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mimo.body import load_body
from mimo.motion import BVH, SourceSkeleton, detect_bone_map, read_bvh_clip, retarget, write_bvh
from mimo.motion.readers import open_body_rest_joints
from mimo.motion.retarget import PRESETS, SMPLH_JOINTS, _smplh_parents

PARENTS = _smplh_parents()
REST = open_body_rest_joints()


def _fk(pose: np.ndarray, rest: np.ndarray, transl: np.ndarray):
    """SMPL forward kinematics in numpy (world rotations, joint positions) via scipy."""
    F = pose.shape[0]
    R = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(F, 52, 3, 3)
    G = np.empty_like(R)
    P = np.empty((F, 52, 3))
    for j, p in enumerate(PARENTS):
        if p < 0:
            G[:, j], P[:, j] = R[:, j], rest[j] + transl
        else:
            G[:, j] = G[:, p] @ R[:, j]
            P[:, j] = P[:, p] + G[:, p] @ (rest[j] - rest[p])
    return G, P


def _random_pose(F, seed, scale=0.4):
    g = np.random.default_rng(seed)
    return g.normal(size=(F, 52, 3)) * scale, g.normal(size=(F, 3)) * 0.5


def _posed_joints(params) -> np.ndarray:
    body = load_body("open", dtype=torch.float64)
    t = {k: torch.as_tensor(v) for k, v in params.items()
         if k in ("global_orient", "body_pose", "transl", "left_hand_pose", "right_hand_pose")}
    return body(**t).joints.numpy()


def test_smpl_named_source_retargets_to_itself_exactly():
    pose, transl = _random_pose(5, 0)
    local = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(5, 52, 3, 3)
    src = SourceSkeleton(SMPLH_JOINTS, PARENTS, REST, local, REST[0] + transl)
    out = retarget(src, REST)
    assert out["preset"] == "smpl" and out["scale"] == pytest.approx(1.0)
    np.testing.assert_allclose(out["global_orient"], pose[:, 0], atol=1e-9)
    np.testing.assert_allclose(out["body_pose"], pose[:, 1:22], atol=1e-9)
    np.testing.assert_allclose(out["left_hand_pose"], pose[:, 22:37], atol=1e-9)
    np.testing.assert_allclose(out["right_hand_pose"], pose[:, 37:52], atol=1e-9)
    np.testing.assert_allclose(out["transl"], transl, atol=1e-12)


def _a_pose_source(pose, transl, rest_pose):
    """A source whose rest is the SMPL body posed by ``rest_pose`` (rest rotations not identity),
    animated so that its joints move exactly like the SMPL body under ``pose``."""
    G0, P0 = _fk(rest_pose[None], REST, np.zeros(3))
    G, _ = _fk(pose, REST, transl)
    rest_rot = G0[0]
    local = np.empty_like(G)
    for i, p in enumerate(PARENTS):
        if p < 0:
            local[:, i] = rest_rot[i].T @ G[:, i]
        else:  # W_i = W_p Rest_p^T Rest_i L_i  =>  L_i = Rest_i^T Rest_p W_p^T W_i
            local[:, i] = rest_rot[i].T @ rest_rot[p] @ np.swapaxes(G[:, p], 1, 2) @ G[:, i]
    return SourceSkeleton(SMPLH_JOINTS, PARENTS, P0[0], local, REST[0] + transl, rest_rot)


def test_a_pose_rest_source_gives_the_same_world_motion():
    rest_pose = np.zeros((52, 3))
    rest_pose[16] = [0.0, 0.0, -0.8]  # left shoulder down ~45 degrees: an A-pose
    rest_pose[17] = [0.0, 0.0, 0.8]
    rest_pose[18] = [0.0, 0.3, 0.0]  # bent elbow at rest
    pose, transl = _random_pose(4, 1)
    src = _a_pose_source(pose, transl, rest_pose)
    out = retarget(src, REST, bone_map="smpl")
    _, want = _fk(pose, REST, transl)
    got = _posed_joints(out)
    np.testing.assert_allclose(got[:, :22], want[:, :22], atol=1e-6)
    assert np.abs(got - want).max() < 0.01  # fingers: direction-only alignment of the wrist
    # copying the source's local rotations would be wrong here: alignment did the work
    naive = Rotation.from_matrix(src.local_rotations[:, 16]).as_rotvec()
    assert np.abs(naive - out["body_pose"][:, 15]).max() > 0.1


def test_turned_z_up_centimetre_source():
    """A source built in Blender-like Z-up axes, in centimetres, facing -Y."""
    pose, transl = _random_pose(3, 2)
    Q = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # Z-up -> Y-up
    Qi = Q.T
    local = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(3, 52, 3, 3)
    # the same skeleton in Z-up coordinates: rest frames are Qi, positions Qi p, scaled to cm
    rest_rot = np.broadcast_to(Qi, (52, 3, 3)).copy()
    src = SourceSkeleton(SMPLH_JOINTS, PARENTS, 100.0 * REST @ Qi.T, local,
                         100.0 * (REST[0] + transl) @ Qi.T, rest_rot)
    out = retarget(src, REST, world_to_smpl=Q)
    assert out["scale"] == pytest.approx(0.01)
    _, want = _fk(pose, REST, transl)
    np.testing.assert_allclose(_posed_joints(out), want, atol=1e-6)


def test_scaling_by_leg_length_keeps_feet_on_the_floor():
    big = REST * 1.5
    floor = REST[:, 1].min()
    src = SourceSkeleton(SMPLH_JOINTS, PARENTS, big - [0, 1.5 * floor, 0],
                         np.broadcast_to(np.eye(3), (1, 52, 3, 3)).copy(),
                         (big[0] - [0, 1.5 * floor, 0])[None])
    out = retarget(src, REST)
    assert out["scale"] == pytest.approx(1 / 1.5)
    joints = _posed_joints(out)[0]
    assert joints[:, 1].min() == pytest.approx(0.0, abs=1e-9)  # lowest joint on the floor


@pytest.mark.parametrize("preset, names", [
    ("mixamo", ["mixamorig:Hips", "mixamorig:Spine", "mixamorig:Spine1", "mixamorig:Spine2",
                "mixamorig:Neck", "mixamorig:Head", "mixamorig:LeftUpLeg", "mixamorig:LeftLeg",
                "mixamorig:RightUpLeg", "mixamorig:RightLeg", "mixamorig:LeftArm",
                "mixamorig:LeftForeArm", "mixamorig:RightArm", "mixamorig:RightForeArm",
                "mixamorig:LeftHandIndex2"]),
    ("rigify", ["root", "DEF-spine", "DEF-spine.001", "DEF-thigh.L", "DEF-thigh.R", "DEF-shin.L",
                "DEF-shin.R", "DEF-upper_arm.L", "DEF-upper_arm.R", "DEF-forearm.L",
                "DEF-forearm.R", "DEF-f_index.02.L"]),
    ("cmu_bvh", ["Hips", "LHipJoint", "LeftUpLeg", "LeftLeg", "RHipJoint", "RightUpLeg",
                 "RightLeg", "LowerBack", "Spine", "Spine1", "LeftArm", "LeftForeArm",
                 "RightArm", "RightForeArm"]),
    ("smpl", ["m_avg_Pelvis", "m_avg_L_Hip", "m_avg_R_Hip", "m_avg_L_Knee", "m_avg_R_Knee",
              "m_avg_L_Shoulder", "m_avg_R_Shoulder", "m_avg_L_Elbow", "m_avg_R_Elbow"]),
])
def test_auto_detection_picks_the_right_preset(preset, names):
    got, bmap = detect_bone_map(names)
    assert got == preset
    assert bmap["left_knee"] in names and bmap["pelvis"] in names
    if preset in ("mixamo", "rigify"):
        assert bmap["left_index2"] in names
    if preset == "rigify":
        assert bmap["pelvis"] == "DEF-spine"


def test_unknown_skeleton_is_refused():
    with pytest.raises(ValueError, match="source_names"):
        detect_bone_map(["Bone", "Bone.001", "Bone.002"])
    src = SourceSkeleton(["a"], [-1], np.zeros((1, 3)), np.eye(3)[None, None], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="bone_map"):
        retarget(src, REST, bone_map={"pelvis": "missing"})
    with pytest.raises(ValueError, match="target_rest_joints"):
        retarget(src, REST[:22], bone_map={"pelvis": "a"})


def _cmu_bvh_from_smpl(pose, transl, path):
    """Write the SMPL motion as a CMU-named BVH in centimetres (ZXY channels)."""
    inv = {}
    for j, cands in PRESETS["cmu_bvh"].items():
        inv[j] = cands[0]
    keep = [j for j in range(22)]
    names = [inv.get(SMPLH_JOINTS[j], SMPLH_JOINTS[j]) for j in keep]
    parents = [PARENTS[j] for j in keep]
    offsets = np.array([REST[j] - (REST[PARENTS[j]] if PARENTS[j] >= 0 else 0) for j in keep])
    offsets[0] = 0.0
    channels = [["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]]
    channels += [["Zrotation", "Xrotation", "Yrotation"]] * 21
    F = pose.shape[0]
    eul = Rotation.from_rotvec(pose[:, :22].reshape(-1, 3)).as_euler("ZXY", degrees=True)
    eul = eul.reshape(F, 22, 3)
    motion = np.concatenate([100.0 * (REST[0] + transl), eul.reshape(F, -1)], axis=1)
    write_bvh(BVH(names, parents, 100.0 * offsets, channels, 1 / 60, motion), path)


def test_cmu_bvh_file_round_trip(tmp_path):
    pose, transl = _random_pose(6, 3)
    pose[:, 22:] = 0.0  # CMU files carry no finger motion
    path = tmp_path / "cmu.bvh"
    _cmu_bvh_from_smpl(pose, transl, path)
    clip = read_bvh_clip(path, target_rest_joints=REST)
    assert clip.fps == pytest.approx(60.0) and clip.num_frames == 6
    b = clip.bodies[0]
    np.testing.assert_allclose(b.global_orient, pose[:, 0], atol=1e-5)
    np.testing.assert_allclose(b.body_pose, pose[:, 1:22], atol=1e-5)
    np.testing.assert_allclose(b.transl, transl, atol=1e-5)
    half = read_bvh_clip(path, target_rest_joints=REST, fps=30)
    assert half.num_frames == 3
    np.testing.assert_allclose(half.bodies[0].body_pose[1], pose[2, 1:22], atol=1e-5)


def test_bvh_parser_errors(tmp_path):
    path = tmp_path / "bad.bvh"
    path.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xrotation Yrotation "
                    "Zrotation\n}\nMOTION\nFrames: 2\nFrame Time: 0.0333\n1 2 3\n")
    with pytest.raises(ValueError, match="expected 2 frames"):
        read_bvh_clip(path)


VENDORED = ["mimo/motion/retarget.py", "mimo/motion/rotations.py"]  # the two the run below needs


def _all_vendored() -> list[str]:
    """Every vendored source, from the add-on's one list (blender_addon/build.py VENDOR)."""
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from blender_addon import build

    return sorted(s for s in build.VENDOR.values() if not s.startswith("server/"))  # those: test_protocol.py


@pytest.mark.parametrize("rel", _all_vendored())
def test_vendored_modules_import_only_stdlib_numpy_and_siblings(rel):
    tree = ast.parse((Path(__file__).parents[1] / rel).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                assert top == "numpy" or top in sys.stdlib_module_names, a.name
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            assert node.level == 1 or top == "numpy" or top in sys.stdlib_module_names, node.module


def test_vendored_copy_runs_without_torch(tmp_path):
    """Copy the two files into a package of their own and run them where torch cannot load."""
    pkg = tmp_path / "vend"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    root = Path(__file__).parents[1]
    for rel in VENDORED:
        (pkg / Path(rel).name).write_bytes((root / rel).read_bytes())
    code = ("import sys; sys.modules['torch'] = None; sys.modules['mimo'] = None\n"
            "import numpy as np\nfrom vend.retarget import detect_bone_map\n"
            "print(detect_bone_map(['Hips','LeftUpLeg','RightUpLeg','LeftLeg','RightLeg',"
            "'LeftArm','RightArm','LeftForeArm','RightForeArm'])[0])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() in ("mixamo", "cmu_bvh")
