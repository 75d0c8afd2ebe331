"""Our SMPL-family loader + LBS against smplx (the reference implementation), on small synthetic
model files written in the real formats: SMPL as a pickle (scipy sparse J_regressor, uint32-root
kintree_table), SMPL-H as an npz with the MANO hand fields smplx reads."""
from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch

from mimo.body import load_body
from mimo.body.joints import SMPL_PARENTS, SMPLH_PARENTS

V = 300
# smplx appends keypoints read at fixed SMPL vertex ids; point them at vertices our small file has
VERTEX_IDS = {k: i for i, k in enumerate(
    ["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
     "RSmallToe", "RHeel"] + [f"{h}{t}" for h in "lr" for t in
                              ("thumb", "index", "middle", "ring", "pinky")])}


def _synthetic(parents: list[int], num_betas: int, seed: int) -> dict:
    """A small body with the fields and layouts of the real model files."""
    g = np.random.default_rng(seed)
    J = len(parents)
    joints = np.zeros((J, 3))
    for j, p in enumerate(parents[1:], start=1):
        joints[j] = joints[p] + g.normal(size=3) * 0.15
    owner = g.integers(0, J, size=V)
    v = joints[owner] + g.normal(size=(V, 3)) * 0.05
    weights = np.zeros((V, J))
    weights[np.arange(V), owner] = 1.0
    second = g.integers(0, J, size=V)
    weights[np.arange(V), second] += g.uniform(0, 1, size=V)
    weights /= weights.sum(1, keepdims=True)
    jreg = np.zeros((J, V))
    for j in range(J):
        near = np.argsort(np.linalg.norm(v - joints[j], axis=1))[:6]
        jreg[j, near] = g.uniform(0.5, 1.0, size=6)
    jreg /= jreg.sum(1, keepdims=True)
    kintree = np.array([[4294967295] + parents[1:], list(range(J))], dtype=np.int64)
    return {
        "v_template": v, "f": g.integers(0, V, size=(2 * V, 3)).astype(np.uint32),
        "shapedirs": g.normal(size=(V, 3, num_betas)) * 0.02,
        "posedirs": g.normal(size=(V, 3, 9 * (J - 1))) * 0.01,
        "J_regressor": jreg, "weights": weights, "kintree_table": kintree,
        "J": jreg @ v,
    }


@pytest.fixture(scope="module")
def smpl_pkl(tmp_path_factory):
    import scipy.sparse

    d = _synthetic(SMPL_PARENTS, 10, seed=0)
    d["J_regressor"] = scipy.sparse.csc_matrix(d["J_regressor"])
    d["bs_style"], d["bs_type"] = "lbs", "lrotmin"
    path = tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.pkl"
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return path


@pytest.fixture(scope="module")
def smplh_npz(tmp_path_factory):
    d = _synthetic(SMPLH_PARENTS, 16, seed=1)
    g = np.random.default_rng(2)
    for s in "lr":
        d[f"hands_components{s}"] = g.normal(size=(45, 45))
        d[f"hands_mean{s}"] = g.normal(size=45) * 0.1  # must be ignored (flat hand mean)
    path = tmp_path_factory.mktemp("smplh") / "SMPLH_NEUTRAL.npz"
    np.savez(path, **d)
    return path


def _random_params(B, n_body, num_betas, seed, hands=True):
    g = torch.Generator().manual_seed(seed)
    p = dict(global_orient=torch.randn(B, 3, generator=g),
             body_pose=0.6 * torch.randn(B, n_body, 3, generator=g),
             betas=torch.randn(B, num_betas, generator=g),
             transl=torch.randn(B, 3, generator=g))
    if hands:
        p["left_hand_pose"] = 0.6 * torch.randn(B, 15, 3, generator=g)
        p["right_hand_pose"] = 0.6 * torch.randn(B, 15, 3, generator=g)
    return p


def test_smpl_pkl_matches_smplx(smpl_pkl):
    import smplx

    ref_model = smplx.SMPL(model_path=str(smpl_pkl), num_betas=10, vertex_ids=VERTEX_IDS)
    ours = load_body(smpl_pkl)
    assert ours.kind == "smpl" and ours.num_joints == 24 and ours.num_betas == 10
    p = _random_params(6, 23, 10, seed=3, hands=False)
    ref = ref_model(global_orient=p["global_orient"], body_pose=p["body_pose"].reshape(6, -1),
                    betas=p["betas"], transl=p["transl"])
    out = ours(**p)
    dv = float((out.vertices - ref.vertices).detach().abs().max())
    dj = float((out.joints - ref.joints[:, :24]).detach().abs().max())
    print(f"SMPL max |ours - smplx|: vertices {dv:.2e} m, joints {dj:.2e} m")
    assert dv < 1e-5 and dj < 1e-5
    np.testing.assert_array_equal(ours.faces.numpy(), ref_model.faces.astype(np.int64))


def test_smplh_npz_matches_smplx(smplh_npz):
    import smplx

    ref_model = smplx.SMPLH(model_path=str(smplh_npz), ext="npz", num_betas=16, use_pca=False,
                            flat_hand_mean=True, vertex_ids=VERTEX_IDS)
    ours = load_body(smplh_npz)
    assert ours.kind == "smplh" and ours.num_joints == 52 and ours.num_betas == 16
    # smplx uses only the first 10 of a 16-direction file; ours zero-pads the 10 given
    p = _random_params(5, 21, 10, seed=4)
    ref = ref_model(global_orient=p["global_orient"], body_pose=p["body_pose"].reshape(5, -1),
                    betas=p["betas"], transl=p["transl"],
                    left_hand_pose=p["left_hand_pose"].reshape(5, -1),
                    right_hand_pose=p["right_hand_pose"].reshape(5, -1))
    out = ours(**p)
    dv = float((out.vertices - ref.vertices).detach().abs().max())
    dj = float((out.joints - ref.joints[:, :52]).detach().abs().max())
    print(f"SMPL-H max |ours - smplx|: vertices {dv:.2e} m, joints {dj:.2e} m")
    assert dv < 1e-5 and dj < 1e-5
    # a different pose gives a clearly different mesh (the comparison is not vacuous)
    assert float((out.vertices[0] - out.vertices[1]).abs().max()) > 0.05


def test_smpl_accepts_the_21_joint_body_layout(smpl_pkl):
    body = load_body(smpl_pkl)
    p = _random_params(2, 21, 10, seed=5, hands=False)
    p23 = dict(p, body_pose=torch.cat([p["body_pose"], torch.zeros(2, 2, 3)], 1))
    torch.testing.assert_close(body(**p).vertices, body(**p23).vertices)


def test_chumpy_pickles_load_without_chumpy(smpl_pkl, tmp_path):
    """Original SMPL pickles hold chumpy arrays; our reader takes their values without chumpy."""
    with open(smpl_pkl, "rb") as f:
        d = pickle.load(f)
    # a throwaway module that pickles like chumpy.ch.Ch (state dict with the value in 'x')
    fake = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    fake.Ch = Ch
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = fake
    try:
        for k in ("v_template", "shapedirs", "posedirs"):
            d[k] = Ch(d[k])
        path = tmp_path / "chumpy_smpl.pkl"
        with open(path, "wb") as f:
            pickle.dump(d, f, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    a, b = load_body(smpl_pkl), load_body(path)
    p = _random_params(2, 23, 10, seed=6, hands=False)
    torch.testing.assert_close(a(**p).vertices, b(**p).vertices)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"v_template": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_body(path)


def test_wrong_joint_count_file_is_rejected(tmp_path):
    d = _synthetic(SMPL_PARENTS[:20], 10, seed=7)
    path = tmp_path / "odd.npz"
    np.savez(path, **d)
    with pytest.raises(ValueError, match="joints"):
        load_body(path)


def _smplx_file(tmp_path, contour: bool = False):
    """A synthetic SMPL-X file (10 shape + 10 expression directions, as v1.0 files; landmark
    tables on random triangles, the jaw-line ones too with ``contour``). smplx reads keypoints at
    fixed SMPL-X vertex ids, so it has SMPL-X's 10,475 vertices."""
    from mimo.body.joints import SMPLX_PARENTS

    global V
    saved, V = V, 10475
    try:
        d = _synthetic(SMPLX_PARENTS, 20, seed=8)
    finally:
        V = saved
    d["posedirs"] = d["posedirs"].astype(np.float32)
    g = np.random.default_rng(9)
    for s in "lr":
        d[f"hands_components{s}"] = g.normal(size=(45, 45))
        d[f"hands_mean{s}"] = g.normal(size=45) * 0.1
    d["lmk_faces_idx"] = np.arange(51)
    d["lmk_bary_coords"] = np.full((51, 3), 1 / 3)
    if contour:
        T = len(d["f"])
        d["lmk_faces_idx"] = g.integers(0, T, size=51)
        bary = g.uniform(0.05, 1, size=(51, 3))
        d["lmk_bary_coords"] = bary / bary.sum(1, keepdims=True)
        d["dynamic_lmk_faces_idx"] = g.integers(0, T, size=(79, 17))
        bary = g.uniform(0.05, 1, size=(79, 17, 3))
        d["dynamic_lmk_bary_coords"] = bary / bary.sum(2, keepdims=True)
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(path, **d)
    return path


def test_smplx_npz_matches_smplx(tmp_path):
    """SMPL-X (55 joints) against the smplx package."""
    import smplx

    path = _smplx_file(tmp_path)
    ref_model = smplx.SMPLX(model_path=str(path), ext="npz", num_betas=10, use_pca=False,
                            flat_hand_mean=True, use_face_contour=False, batch_size=3)
    ours = load_body(path)
    assert ours.kind == "smplx" and ours.num_joints == 55 and ours.num_betas == 10
    p = _random_params(3, 21, 10, seed=10)
    ref = ref_model(global_orient=p["global_orient"], body_pose=p["body_pose"].reshape(3, -1),
                    betas=p["betas"], transl=p["transl"],
                    left_hand_pose=p["left_hand_pose"].reshape(3, -1),
                    right_hand_pose=p["right_hand_pose"].reshape(3, -1))
    out = ours(**p)
    dv = float((out.vertices - ref.vertices).detach().abs().max())
    dj = float((out.joints - ref.joints[:, :55]).detach().abs().max())
    print(f"SMPL-X max |ours - smplx|: vertices {dv:.2e} m, joints {dj:.2e} m")
    assert dv < 1e-5 and dj < 1e-5


def test_smplx_face_points_match_smplx_landmarks(tmp_path):
    """The 70 OpenPose face points of an SMPL-X body (mimo/body/face.py) against the smplx
    package's landmarks with ``use_face_contour=True``: its 51 static landmarks are our points
    17..67, its 17 jaw-line points (the table row chosen by the neck's turn) our 0..16; the
    pupils are the centres of the eye landmarks."""
    import smplx

    from mimo.body.face import contour_row

    path = _smplx_file(tmp_path, contour=True)
    B = 48
    ref_model = smplx.SMPLX(model_path=str(path), ext="npz", num_betas=10, use_pca=False,
                            flat_hand_mean=True, use_face_contour=True, batch_size=B)
    ours = load_body(path)
    p = _random_params(B, 21, 10, seed=11)
    ref = ref_model(global_orient=p["global_orient"], body_pose=p["body_pose"].reshape(B, -1),
                    betas=p["betas"], transl=p["transl"],
                    left_hand_pose=p["left_hand_pose"].reshape(B, -1),
                    right_hand_pose=p["right_hand_pose"].reshape(B, -1))
    out = ours(**p)
    face = out.face
    assert face.shape == (B, 70, 3) and torch.isfinite(face).all()
    landmarks = ref.joints[:, -68:].detach()
    d_static = float((face[:, 17:68] - landmarks[:, :51]).abs().max())
    d_contour = float((face[:, :17] - landmarks[:, 51:]).abs().max())
    print(f"SMPL-X face points max |ours - smplx|: static {d_static:.2e} m, jaw line {d_contour:.2e} m")
    assert d_static < 1e-5 and d_contour < 1e-5
    assert torch.allclose(face[:, 68], face[:, 36:42].mean(1)) and torch.allclose(face[:, 69], face[:, 42:48].mean(1))
    # the poses turn the neck both ways and past the tables' 39 degrees: many rows, both clamps
    from mimo.body.model import axis_angle_to_matrix

    pose = torch.cat([p["global_orient"][:, None], p["body_pose"]], 1).to(torch.float64)
    rot = axis_angle_to_matrix(pose)
    chain = rot[:, 0] @ rot[:, 3] @ rot[:, 6] @ rot[:, 9] @ rot[:, 12]  # root .. neck
    rows = set(contour_row(chain).tolist())
    assert len(rows) >= 10 and {39, 78} <= rows, sorted(rows)


def test_face_points_reach_the_openpose_json(tmp_path):
    """An SMPL-X body's face points come out of the passes as 70 projected OpenPose points;
    bodies without landmarks keep ``face_keypoints_2d`` empty."""
    from mimo.codes.keypoints import FACE_70, openpose_frame

    ours = load_body(_smplx_file(tmp_path, contour=True))
    p = _random_params(1, 21, 10, seed=12)
    p["transl"] = torch.tensor([[0.0, 0.0, 4.0]])
    face = ours(**p).face[0].double().numpy()
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    R, t = np.diag([1.0, -1.0, -1.0]) @ np.diag([-1.0, 1.0, -1.0]), np.zeros(3)  # camera at the origin, looking down +Z
    named = dict(zip(FACE_70, face))
    person = openpose_frame([named], K, R, t, 640, 480)["people"][0]
    got = np.asarray(person["face_keypoints_2d"]).reshape(70, 3)
    c = face @ R.T + t
    uv = c[:, :2] / c[:, 2:] * 500 + np.array([320, 240]) - 0.5
    inside = (c[:, 2] > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < 639.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < 479.5)
    assert inside.sum() > 35
    assert np.allclose(got[inside, :2], uv[inside], atol=1e-9) and (got[inside, 2] == 1).all()
    assert (got[~inside] == 0).all()
    assert openpose_frame([{"pelvis": np.zeros(3)}], K, R, t, 640, 480)["people"][0]["face_keypoints_2d"] == []


def test_render_passes_carry_the_face_points(tmp_path):
    """``mimo export``'s passes name an SMPL-X body's face points (``face_00`` .. ``face_69``)
    with the body model's own positions, frame by frame."""
    import dataclasses

    from mimo.codes.keypoints import FACE_70
    from mimo.codes.passes import render_passes
    from mimo.codes.render import auto_camera_track
    from mimo.motion import load_npz
    from mimo.motion.cli import take_frames

    body = load_body(_smplx_file(tmp_path, contour=True))
    clip, _ = load_npz("examples/motions/walk.npz")
    clip, _ = take_frames(clip, None, slice(0, 2))
    track = clip.bodies[0]
    clip = dataclasses.replace(clip, bodies=[dataclasses.replace(track, betas=np.zeros(10, np.float32))])
    camera = auto_camera_track(clip, body, 64, 64)
    passes = render_passes(clip, camera, body, (64, 64))
    params = {k: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float32)
              for k, v in clip.bodies[0].params().items()}
    with torch.no_grad():
        face = body(**params).face.double().numpy()
    for f in range(2):
        named = passes["joints"][f][0]
        assert np.allclose(np.stack([named[n] for n in FACE_70]), face[f], atol=1e-6)
