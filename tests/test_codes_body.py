"""Motion codes of the open body: placement against projected joints, hands, OpenGL fidelity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mimo.body import load_body
from mimo.codes import FRONT_VIEW, auto_camera, default_code_table, opengl, remove_hands, render_codes


@pytest.fixture(scope="module")
def body():
    return load_body("open")


@pytest.fixture(scope="module")
def posed(body):
    pose = torch.zeros(2, 21, 3)
    pose[:, 15, 2] = -1.0  # left shoulder down
    pose[1, 16, 2] = 0.6  # right shoulder half down in frame 1
    pose[1, 0, 0] = -0.6  # left hip forward in frame 1
    go = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    transl = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.1, -0.3]])
    out = body(global_orient=go, body_pose=pose, transl=transl)
    return out.vertices, out.joints


def project(points, K, R, t):
    cam = points @ R.T + t
    uv = cam @ K.T
    return uv[..., :2] / uv[..., 2:]


def test_body_lands_where_projecting_it_says(body, posed):
    verts, joints = posed
    W, H = 200, 240
    K, R, t = auto_camera(verts.numpy(), W, H, margin=0.08, focal=260.0)
    # A camera of docs/CONVENTIONS.md, a little to the side and above (not the auto camera's R).
    a = 0.35
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    R = np.repeat((FRONT_VIEW @ Ry)[None], 2, 0)
    t = t + np.array([0.0, -0.05, 0.4])
    table = default_code_table(body.rest_vertices.numpy())
    codes, mask = render_codes(verts, body.faces, table, K, R, t, W, H, return_mask=True)
    codes, mask = codes.numpy(), mask.numpy()
    for i in range(2):
        uv = project(verts[i].double().numpy(), K[i], R[i], t[i])
        # The silhouette's bounding box is the projected vertices' box (to the pixel grid).
        ys, xs = np.nonzero(mask[i])
        lo, hi = np.floor(uv.min(0) - 0.5 + 1), np.ceil(uv.max(0) - 0.5 - 1)
        assert abs(xs.min() - lo[0]) <= 1 and abs(xs.max() - hi[0]) <= 1
        assert abs(ys.min() - lo[1]) <= 1 and abs(ys.max() - hi[1]) <= 1
        # Joints inside the torso and head project onto covered pixels.
        ju = project(joints[i].double().numpy(), K[i], R[i], t[i])
        for name in ("pelvis", "spine1", "spine2", "spine3", "neck", "head"):
            u, v = np.floor(ju[body.joint_names.index(name)]).astype(int)
            assert mask[i, v, u], (i, name)
        # Orientation: the head is above the pelvis on screen, the body's left wrist on the right.
        head, pelvis = ju[body.joint_names.index("head")], ju[body.joint_names.index("pelvis")]
        assert head[1] < pelvis[1] - 40
        lw, rw = ju[body.joint_names.index("left_wrist")], ju[body.joint_names.index("right_wrist")]
        assert lw[0] > rw[0]
        # Colour code: the head is high in G (y up), the feet low.
        hu, hv = np.floor(head).astype(int)
        assert codes[i, hv, hu, 1] > 200


def test_hand_removal_removes_hand_pixels_only(body, posed):
    verts, joints = posed
    faces = body.faces.numpy()
    sets = {k: v.numpy() for k, v in body.vertex_sets.items()}
    no_hands = remove_hands(faces, sets)
    left, right = (np.isin(faces, sets[k]).all(1) for k in ("left_hand", "right_hand"))
    assert len(no_hands) == len(faces) - left.sum() - right.sum() and left.sum() > 100
    W = H = 160
    K, R, t = auto_camera(verts.numpy(), W, H, focal=200.0)
    table = default_code_table(body.rest_vertices.numpy())
    _, full = render_codes(verts, faces, table, K, R, t, W, H, return_mask=True)
    _, cut = render_codes(verts, no_hands, table, K, R, t, W, H, return_mask=True)
    assert (cut <= full).all()
    gone = (full & ~cut).numpy()
    assert gone.sum() > 20
    # Every removed pixel is near a projected hand vertex.
    for i in range(2):
        hand_uv = project(verts[i].double().numpy()[np.concatenate([sets["left_hand"], sets["right_hand"]])],
                          K[i], R[i], t[i])
        ys, xs = np.nonzero(gone[i])
        d = np.abs(np.stack([xs + 0.5, ys + 0.5], 1)[:, None] - hand_uv[None]).max(-1).min(1)
        assert (d < 3).all()


@pytest.mark.skipif(not opengl.available(), reason="OSMesa OpenGL not available")
def test_open_body_matches_opengl(body, posed):
    verts, _ = posed
    W = H = 256
    K, R, t = auto_camera(verts.numpy(), W, H)  # official focal length
    table = default_code_table(body.rest_vertices.numpy())
    ours = render_codes(verts, body.faces, table, K, R, t, W, H).numpy()
    with opengl.OSMesaRenderer(W, H) as gl:
        for i in range(2):
            ref = gl.render(verts[i].numpy(), body.faces.numpy(), table, K[i], R[i], t[i])
            mse = np.mean((ours[i].astype(float) - ref) ** 2)
            assert 10 * np.log10(255**2 / mse) >= 40.0
            covered = ref.any(-1)
            assert (np.abs(ours[i].astype(int) - ref).max(-1) > 1).sum() < 0.02 * covered.sum()
