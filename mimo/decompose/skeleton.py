"""COCO-17 keypoints on our body models, and posing a few points of a body (no full mesh).

The 17 COCO keypoints (the order ViTPose and most 2-D pose models use) are read off a body as
joints (shoulders, elbows, wrists, hips, knees, ankles: the model's own joints of those names)
and vertices (nose, eyes, ears: picked once from the rest mesh by geometry, see
:func:`keypoint_sources`). A 2-D detector's hip is not exactly the SMPL hip joint (it sits a few
centimetres lower and outward); the fitter's robust loss absorbs that.

Conventions (docs/CONVENTIONS.md): metres, SMPL model axes (Y up, the body faces +Z, +X is the
body's left).
"""
from __future__ import annotations

import numpy as np
import torch

COCO17 = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
#: COCO keypoint -> body joint of the same place
_JOINT_OF = {n: n for n in COCO17[5:]}
#: drawing order for contact sheets: pairs of COCO indices
COCO_EDGES = [(5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13),
              (13, 15), (12, 14), (14, 16), (0, 1), (0, 2), (1, 3), (2, 4)]
TORSO_AND_FACE = [0, 1, 2, 3, 4, 5, 6, 11, 12]


def keypoint_sources(body) -> tuple[np.ndarray, np.ndarray]:
    """Where each COCO keypoint sits on ``body``: (joint index or -1, vertex index or -1).

    Face points are vertices of the rest mesh owned by the head joint: the nose is the most
    forward one near the mid-plane; eyes the nearest head vertices to points 3.5 cm above and
    3.2 cm to each side of the nose, 2 cm behind it; ears the outermost head vertices at eye
    height.

    Shapes: -> joint_ids (17,), vertex_ids (17,) int64
    """
    names = body.joint_names
    joints = np.full(17, -1, np.int64)
    verts = np.full(17, -1, np.int64)
    for k, n in enumerate(COCO17):
        if n in _JOINT_OF:
            joints[k] = names.index(_JOINT_OF[n])
    rest = body.rest_vertices.detach().cpu().double().numpy()
    owner = body.skin_weights.argmax(1).cpu().numpy()
    head = np.nonzero(owner == names.index("head"))[0]
    hv = rest[head]
    mid = np.abs(hv[:, 0]) < 0.01
    nose = head[mid][np.argmax(hv[mid, 2])]
    verts[0] = nose
    p = rest[nose]
    for k, side in ((1, 1.0), (2, -1.0)):  # +X is the body's left
        target = p + np.array([0.032 * side, 0.035, -0.02])
        verts[k] = head[np.argmin(((hv - target) ** 2).sum(1))]
    eye_y = rest[verts[1], 1]
    band = np.abs(hv[:, 1] - (eye_y - 0.02)) < 0.02
    for k, side in ((3, 1.0), (4, -1.0)):
        verts[k] = head[band][np.argmax(side * hv[band, 0])]
    return joints, verts


NUM_BODY = 22  # pelvis + the 21 body_pose joints: the only joints the fit rotates


def rotation_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula with finite gradients everywhere (also at the zero rotation).

    Shapes: rotvec (..., 3) -> (..., 3, 3)
    """
    a2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]
    small = a2 < 1e-8
    safe = torch.where(small, torch.ones_like(a2), a2)
    a = safe.sqrt()
    s = torch.where(small, 1.0 - a2 / 6.0, torch.sin(a) / a)
    c = torch.where(small, 0.5 - a2 / 24.0, (1.0 - torch.cos(a)) / safe)
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*rotvec.shape, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + s * k + c * (k @ k)


class BodyRig:
    """The part of a body model the fitter moves: the 22 body joints, with every other joint
    (fingers, SMPL's hand joints, SMPL-X jaw and eyes) held at zero rotation. A joint with zero
    local rotation has its parent's skinning transform, so its skin weights fold into its nearest
    body-joint ancestor and posing needs only the 22 body transforms (exactly the same vertices
    as :meth:`BodyModel.lbs` with those joints at zero).

    Shapes: rest_joints (22, 3), joint_shapedirs (22, 3, K), skin_weights (V, 22)
    """

    def __init__(self, body):
        self.body = body
        parents = body.parents
        self.parents = parents[:NUM_BODY]
        owner = list(range(body.num_joints))
        for j in range(NUM_BODY, body.num_joints):
            a = j
            while a >= NUM_BODY:
                a = parents[a]
            owner[j] = a
        W = body.skin_weights
        self.skin_weights = torch.zeros(W.shape[0], NUM_BODY, dtype=W.dtype, device=W.device)
        self.skin_weights.index_add_(1, torch.as_tensor(owner, device=W.device), W)
        self.rest_joints = body.rest_joints[:NUM_BODY]
        self.joint_shapedirs = body.joint_shapedirs[:NUM_BODY]
        self.posedirs = None if body.posedirs is None else body.posedirs[:9 * (NUM_BODY - 1)]
        rv, f = body.rest_vertices, body.faces
        fn = torch.cross(rv[f[:, 1]] - rv[f[:, 0]], rv[f[:, 2]] - rv[f[:, 0]], dim=1)
        n = torch.zeros_like(rv).index_add_(0, f.reshape(-1), fn.repeat_interleave(3, 0))
        self.rest_normals = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def pose(self, global_orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor,
             transl: torch.Tensor, vertex_ids: torch.Tensor, normals: bool = False) -> tuple:
        """Joints and a subset of vertices of the posed body (differentiable); with ``normals``
        also their normals (rest normals turned by the skinning transforms: exact for rigid
        parts, close elsewhere).

        Shapes: global_orient (B, 3), body_pose (B, 21, 3), betas (B, K), transl (B, 3),
            vertex_ids (n,) long -> joints (B, 22, 3), vertices (B, n, 3)[, normals (B, n, 3)]
        """
        b = self.body
        B = global_orient.shape[0]
        rot = rotation_matrix(torch.cat([global_orient[:, None], body_pose], 1))  # (B, 22, 3, 3)
        v = b.rest_vertices[vertex_ids] + torch.einsum("bk,vik->bvi", betas, b.shapedirs[vertex_ids])
        joints = self.rest_joints + torch.einsum("bk,jik->bji", betas, self.joint_shapedirs)
        if self.posedirs is not None:
            cols = torch.stack([3 * vertex_ids, 3 * vertex_ids + 1, 3 * vertex_ids + 2], 1).reshape(-1)
            feature = (rot[:, 1:] - torch.eye(3, dtype=rot.dtype, device=rot.device)).reshape(B, -1)
            v = v + (feature @ self.posedirs[:, cols]).reshape(B, -1, 3)
        g_rot, g_pos = [], []
        for j, p in enumerate(self.parents):
            if p < 0:
                g_rot.append(rot[:, j])
                g_pos.append(joints[:, j])
            else:
                g_rot.append(g_rot[p] @ rot[:, j])
                g_pos.append((g_rot[p] @ (joints[:, j] - joints[:, p])[..., None])[..., 0] + g_pos[p])
        G_rot, G_pos = torch.stack(g_rot, 1), torch.stack(g_pos, 1)
        offset = G_pos - (G_rot @ joints[..., None])[..., 0]
        A = torch.cat([G_rot, offset[..., None]], -1).reshape(B, NUM_BODY, 12)
        T = (self.skin_weights[vertex_ids] @ A).reshape(B, -1, 3, 4)
        verts = (T[..., :3] @ v[..., None])[..., 0] + T[..., 3]
        if normals:
            n = (T[..., :3] @ self.rest_normals[vertex_ids][..., None])[..., 0]
            return G_pos + transl[:, None], verts + transl[:, None], n / n.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        return G_pos + transl[:, None], verts + transl[:, None]


def body_keypoints(joints: torch.Tensor, verts: torch.Tensor, joint_ids, n_face: int = 5
                   ) -> torch.Tensor:
    """COCO-17 points from posed joints and the posed face vertices (the first ``n_face``
    vertices of ``verts`` are nose, eyes, ears in :func:`keypoint_sources` order).

    Shapes: joints (B, J, 3), verts (B, n >= 5, 3) -> (B, 17, 3)
    """
    ids = torch.as_tensor(np.asarray(joint_ids)[5:], device=joints.device)
    return torch.cat([verts[:, :n_face], joints[:, ids]], 1)
