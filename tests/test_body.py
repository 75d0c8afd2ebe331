"""The open body and our LBS: SMPL semantics checked against geometric facts and smplx's names."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mimo.body import BodyModel, axis_angle_to_matrix, export_rig_data, load_body

# Parent of every SMPL-H joint, written out by name (an independent statement of the SMPL tree).
EXPECTED_PARENT = {
    "left_hip": "pelvis", "right_hip": "pelvis", "spine1": "pelvis", "left_knee": "left_hip",
    "right_knee": "right_hip", "spine2": "spine1", "left_ankle": "left_knee",
    "right_ankle": "right_knee", "spine3": "spine2", "left_foot": "left_ankle",
    "right_foot": "right_ankle", "neck": "spine3", "left_collar": "spine3",
    "right_collar": "spine3", "head": "neck", "left_shoulder": "left_collar",
    "right_shoulder": "right_collar", "left_elbow": "left_shoulder",
    "right_elbow": "right_shoulder", "left_wrist": "left_elbow", "right_wrist": "right_elbow",
}
for _side in ("left", "right"):
    for _f in ("index", "middle", "pinky", "ring", "thumb"):
        EXPECTED_PARENT[f"{_side}_{_f}1"] = f"{_side}_wrist"
        EXPECTED_PARENT[f"{_side}_{_f}2"] = f"{_side}_{_f}1"
        EXPECTED_PARENT[f"{_side}_{_f}3"] = f"{_side}_{_f}2"


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return load_body("open")


@pytest.fixture(scope="module")
def body64() -> BodyModel:
    return load_body("open", dtype=torch.float64)


def zeros(B, dtype=torch.float32):
    return torch.zeros(B, 3, dtype=dtype), torch.zeros(B, 21, 3, dtype=dtype)


def test_counts_and_topology(body):
    assert body.kind == "open"
    assert body.rest_vertices.shape == (13718, 3)
    assert body.faces.shape == (27420, 3) and body.faces.dtype == torch.long
    assert int(body.faces.min()) == 0 and int(body.faces.max()) == 13717
    assert body.num_joints == 52 and body.num_betas == 6
    assert body.skin_weights.shape == (13718, 52)
    assert torch.all(body.skin_weights >= 0)
    torch.testing.assert_close(body.skin_weights.sum(1), torch.ones(13718), atol=1e-5, rtol=0)
    # every joint drives some vertices
    assert torch.all(body.skin_weights.max(0).values > 0.2)


def test_joint_names_match_smplx_and_parents_match_smpl_tree(body):
    from smplx.joint_names import JOINT_NAMES  # SMPL-X list: 22 body, jaw + 2 eyes, 30 finger

    assert body.joint_names == JOINT_NAMES[:22] + JOINT_NAMES[25:55]
    assert body.parents[0] == -1
    for j, name in enumerate(body.joint_names[1:], start=1):
        assert body.joint_names[body.parents[j]] == EXPECTED_PARENT[name], name


def test_rest_is_a_t_pose_in_smpl_axes(body):
    J = dict(zip(body.joint_names, body.rest_joints))
    v = body.rest_vertices
    # Y up: head above pelvis above ankles; +X is the body's left; faces +Z (toes forward)
    assert J["head"][1] > J["pelvis"][1] > J["left_ankle"][1]
    assert J["left_shoulder"][0] > 0 > J["right_shoulder"][0]
    assert J["left_foot"][2] > J["left_ankle"][2] + 0.05
    # arms straight along +-X at shoulder height
    for side, s in (("left", 1), ("right", -1)):
        for a, b in ((f"{side}_shoulder", f"{side}_elbow"), (f"{side}_elbow", f"{side}_wrist")):
            d = (J[b] - J[a]) / torch.linalg.norm(J[b] - J[a])
            assert float(d[0]) * s > 0.999
    # pelvis at the origin; stature of an adult
    assert torch.linalg.norm(J["pelvis"]) < 1e-6
    assert 1.6 < float(v[:, 1].max() - v[:, 1].min()) < 2.0
    # left/right mirror symmetry of the joints
    flip = torch.tensor([-1.0, 1.0, 1.0])
    for j, name in enumerate(body.joint_names):
        other = name.replace("left", "@").replace("right", "left").replace("@", "right")
        k = body.joint_names.index(other)
        torch.testing.assert_close(body.rest_joints[j] * flip, body.rest_joints[k], atol=1e-5,
                                   rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_pose_is_rest(dtype):
    b = load_body("open", dtype=dtype)
    out = b(*zeros(3, dtype))
    assert out.vertices.shape == (3, 13718, 3) and out.joints.shape == (3, 52, 3)
    assert out.vertices.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert float((out.vertices - b.rest_vertices).abs().max()) < tol
    assert float((out.joints - b.rest_joints).abs().max()) < tol


def test_global_orient_rotates_about_pelvis_and_transl_translates(body64):
    go, bp = zeros(1, torch.float64)
    go[0] = torch.tensor([0.3, -1.1, 0.7], dtype=torch.float64)
    transl = torch.tensor([[0.5, -0.2, 2.0]], dtype=torch.float64)
    out = body64(go, bp, transl=transl)
    R = torch.from_numpy(_scipy_rotmat(go.numpy()))[0]
    pelvis = body64.rest_joints[0]
    expect = (body64.rest_vertices - pelvis) @ R.T + pelvis + transl
    torch.testing.assert_close(out.vertices[0], expect, atol=1e-12, rtol=0)
    expect_j = (body64.rest_joints - pelvis) @ R.T + pelvis + transl
    torch.testing.assert_close(out.joints[0], expect_j, atol=1e-12, rtol=0)


def test_left_shoulder_plus_90_about_z_lifts_left_arm(body):
    go, bp = zeros(1)
    i = body.joint_names.index("left_shoulder") - 1  # body_pose excludes the pelvis
    bp[0, i] = torch.tensor([0.0, 0.0, math.pi / 2])
    J = dict(zip(body.joint_names, body(go, bp).joints[0]))
    R = dict(zip(body.joint_names, body.rest_joints))
    assert J["left_wrist"][1] > J["left_shoulder"][1] + 0.4
    torch.testing.assert_close(J["left_wrist"][0], J["left_shoulder"][0], atol=1e-5, rtol=0)
    for a, b in (("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist")):
        torch.testing.assert_close(torch.linalg.norm(J[b] - J[a]), torch.linalg.norm(R[b] - R[a]))
    # the right arm did not move
    torch.testing.assert_close(J["right_wrist"], R["right_wrist"])


def test_random_pose_keeps_bone_lengths_and_hand_vertices_follow_the_wrist(body64):
    g = torch.Generator().manual_seed(0)
    B = 5
    go = torch.randn(B, 3, generator=g, dtype=torch.float64)
    bp = 0.5 * torch.randn(B, 21, 3, generator=g, dtype=torch.float64)
    hands = [0.3 * torch.randn(B, 15, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    betas = torch.randn(B, 6, generator=g, dtype=torch.float64) * 0.5
    out = body64(go, bp, betas=betas, left_hand_pose=hands[0], right_hand_pose=hands[1])
    _, rest_j = body64.shaped_rest(betas)
    par = torch.tensor(body64.parents[1:])
    bones = lambda j: torch.linalg.norm(j[:, 1:] - j[:, par], dim=-1)  # noqa: E731
    torch.testing.assert_close(bones(out.joints), bones(rest_j), atol=1e-10, rtol=0)
    # hand vertices stay near their (moved) wrist and fingers
    for side in ("left", "right"):
        hand = out.vertices[:, body64.vertex_sets[f"{side}_hand"]]
        wrist = out.joints[:, body64.joint_names.index(f"{side}_wrist")]
        dist = torch.linalg.norm(hand - wrist[:, None], dim=-1)
        assert float(dist.max()) < 0.25


def test_batch_elements_are_independent(body):
    g = torch.Generator().manual_seed(1)
    go = torch.randn(4, 3, generator=g)
    bp = 0.4 * torch.randn(4, 21, 3, generator=g)
    betas = torch.randn(4, 6, generator=g)
    full = body(go, bp, betas=betas)
    one = body(go[2:3], bp[2:3], betas=betas[2:3])
    torch.testing.assert_close(full.vertices[2:3], one.vertices, atol=1e-6, rtol=0)


def test_float32_agrees_with_float64(body, body64):
    g = torch.Generator().manual_seed(2)
    go, bp = torch.randn(2, 3, generator=g), 0.5 * torch.randn(2, 21, 3, generator=g)
    a = body(go, bp).vertices
    b = body64(go.double(), bp.double()).vertices
    assert float((a.double() - b).abs().max()) < 1e-5


def test_joints_follow_shape(body):
    rest_v, rest_j = body.shaped_rest(torch.eye(6) * 1.0)
    assert body.beta_names[4] == "height"
    stature = rest_v[:, :, 1].amax(1) - rest_v[:, :, 1].amin(1)
    assert float(stature[4]) > float(body.rest_vertices[:, 1].max() - body.rest_vertices[:, 1].min()) + 0.2
    # each joint stays inside its own body part: the nearest vertex it drives most is close
    owner = body.skin_weights.argmax(1)
    for k in range(6):
        for name in ("left_elbow", "left_knee", "head", "right_wrist", "left_ankle"):
            j = body.joint_names.index(name)
            mine = rest_v[k, owner == j]
            d = torch.linalg.norm(mine - rest_j[k, j], dim=-1).min()
            assert float(d) < 0.08, (k, name, float(d))


def test_vertex_sets_are_the_hands(body):
    J = dict(zip(body.joint_names, body.rest_joints))
    left = body.rest_vertices[body.vertex_sets["left_hand"]]
    right = body.rest_vertices[body.vertex_sets["right_hand"]]
    assert len(left) == len(right) > 500
    assert float(left[:, 0].min()) > float(J["left_elbow"][0])
    assert float(right[:, 0].max()) < float(J["right_elbow"][0])


def _scipy_rotmat(rotvec: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix()


def test_axis_angle_to_matrix_matches_scipy_including_tiny_angles():
    g = np.random.default_rng(3)
    v = np.concatenate([g.normal(size=(50, 3)) * 2, g.normal(size=(10, 3)) * 1e-9,
                        np.zeros((1, 3)), g.normal(size=(10, 3)) * 1e-4])
    ours = axis_angle_to_matrix(torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(ours, _scipy_rotmat(v), atol=1e-13)


@pytest.mark.parametrize("kwargs, arg", [
    (dict(global_orient=torch.zeros(2, 4)), "global_orient"),
    (dict(body_pose=torch.zeros(2, 22, 3)), "body_pose"),
    (dict(body_pose=torch.zeros(2, 63)), "body_pose"),
    (dict(body_pose=torch.zeros(3, 21, 3)), "body_pose"),
    (dict(betas=torch.zeros(2, 7)), "betas"),
    (dict(betas=torch.zeros(2)), "betas"),
    (dict(transl=torch.zeros(2, 2)), "transl"),
    (dict(left_hand_pose=torch.zeros(2, 14, 3)), "left_hand_pose"),
    (dict(right_hand_pose=torch.zeros(2, 15, 3, dtype=torch.int64)), "right_hand_pose"),
    (dict(global_orient=torch.tensor([[0.0, float("nan"), 0.0]] * 2)), "global_orient"),
    (dict(transl=torch.tensor([[0.0, float("inf"), 0.0]] * 2)), "transl"),
    (dict(body_pose=torch.zeros(2, 21, 3, dtype=torch.int32)), "body_pose"),
])
def test_bad_input_names_the_argument(body, kwargs, arg):
    args = dict(global_orient=torch.zeros(2, 3), body_pose=torch.zeros(2, 21, 3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=arg):
        body(**args)


def test_load_body_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="spec"):
        load_body("fbx:thing")
    with pytest.raises(ValueError, match="dtype"):
        load_body("open", dtype=torch.float16)
    monkeypatch.setenv("MIMO_BODY_MODELS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="smplh.*mano.is.tue.mpg.de|mano.is.tue.mpg.de"):
        load_body("smplh")
    with pytest.raises(FileNotFoundError, match="smpl.is.tue.mpg.de"):
        load_body(tmp_path / "SMPL_NEUTRAL.pkl")


def test_23_joint_smpl_body_pose_drives_the_open_body(body):
    go, bp = zeros(1)
    bp[0, 3] = torch.tensor([0.5, 0.0, 0.0])
    a = body(go, bp).vertices
    bp23 = torch.cat([bp, torch.ones(1, 2, 3)], 1)  # SMPL hand joints: no finger joints here
    torch.testing.assert_close(body(go, bp23).vertices, a)


def test_export_rig_data_round_trip_without_torch(body, tmp_path):
    path = tmp_path / "rig.npz"
    export_rig_data(body, path)
    with np.load(path, allow_pickle=False) as d:
        assert int(d["format_version"]) == 1 and str(d["kind"]) == "open"
        assert list(d["joint_names"]) == body.joint_names
        assert list(d["parents"]) == body.parents
        assert d["faces"].shape == (27420, 3)
        betas = np.array([0.3, -0.5, 0.1, 0.9, -1.0, 0.2], dtype=np.float32)
        v = d["rest_vertices"] + d["shapedirs"] @ betas
        j = d["rest_joints"] + d["joint_shapedirs"] @ betas
        ref_v, ref_j = body.shaped_rest(torch.from_numpy(betas)[None])
        np.testing.assert_allclose(v, ref_v[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(j, ref_j[0].numpy(), atol=1e-5)
        assert set(d["vertex_set_names"]) >= {"left_hand", "right_hand"}
        np.testing.assert_array_equal(d["vertex_set_left_hand"], body.vertex_sets["left_hand"])
        np.testing.assert_allclose(d["skin_weights"], body.skin_weights.numpy())
        assert json.loads(str(d["info"]))["vertices"] == 13718


def test_default_path_does_not_import_smplx_or_anny():
    import subprocess
    import sys

    code = ("import sys, torch; from mimo.body import load_body; b = load_body();"
            "b(torch.zeros(1,3), torch.zeros(1,21,3));"
            "print(any(m.split('.')[0] in ('smplx', 'anny', 'chumpy') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.gpu
def test_cuda_matches_cpu(body):
    g = torch.Generator().manual_seed(4)
    go, bp = torch.randn(8, 3, generator=g), 0.5 * torch.randn(8, 21, 3, generator=g)
    cpu = body(go, bp).vertices
    gpu_body = load_body("open", device="cuda")
    out = gpu_body(go.cuda(), bp.cuda())
    assert out.vertices.device.type == "cuda"
    assert gpu_body.vertex_sets["left_hand"].device.type == "cuda"
    torch.testing.assert_close(out.vertices.cpu(), cpu, atol=1e-5, rtol=0)
