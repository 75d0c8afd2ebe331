"""One body-model interface and our own batched linear blend skinning (no smplx, no anny).

Conventions (docs/CONVENTIONS.md): metres; SMPL axes (Y up, the body faces +Z, +X is the body's left);
axis-angle rotations per joint, local to the parent joint; ``global_orient`` rotates the whole body
about the pelvis joint and ``transl`` then moves everything. Hand poses are relative to the flat
hand (SMPL-H ``flat_hand_mean=True``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mimo.body.joints import (
    HAND_JOINTS,
    NUM_BODY_JOINTS,
    NUM_HAND_JOINTS,
    NUM_SMPL_BODY_JOINTS,
)
from mimo.body.kinds import BODY_KINDS
from mimo.errors import FieldError

KINDS = tuple(BODY_KINDS)  # the registry: mimo/body/kinds.py


@dataclasses.dataclass
class BodyOutput:
    """Posed body.

    Shapes:
        vertices (B, V, 3), joints (B, J, 3) in metres, model/world space; face (B, 70, 3): the
        OpenPose face points of a body whose model file has landmarks (mimo/body/face.py; NaN
        where it defines none), else None.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    face: torch.Tensor | None = None


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, exact to round-off also for tiny angles.

    Shapes:
        rotvec (..., 3) -> (..., 3, 3)
    """
    angle2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    angle = angle2.sqrt()
    small = angle2 < 1e-12
    safe = torch.where(small, torch.ones_like(angle), angle)
    # sin(a)/a and (1-cos(a))/a^2 with Taylor expansions near zero
    a = torch.where(small, 1.0 - angle2 / 6.0, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - angle2 / 24.0, (1.0 - torch.cos(safe)) / (safe * safe))
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*rotvec.shape, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a * k + b * (k @ k)


def _levels(parents: list[int]) -> list[torch.Tensor]:
    """Joints grouped by depth in the tree (parents always in an earlier group)."""
    depth = []
    for j, p in enumerate(parents):
        if p >= j:
            raise ValueError(f"parents: joint {j} has parent {p}; expected parents before children")
        depth.append(0 if p < 0 else depth[p] + 1)
    return [torch.tensor([j for j, d in enumerate(depth) if d == level])
            for level in range(max(depth) + 1)]


class BodyModel(torch.nn.Module):
    """A linear-blend-skinning body with linear shape space (and optional pose correctives).

    Attributes:
        kind: "open", "smpl", "smplh" or "smplx".
        faces (T, 3) long; joint_names (list of J str); parents (list of J int, -1 for the root);
        rest_vertices (V, 3); rest_joints (J, 3); skin_weights (V, J); shapedirs (V, 3, K);
        joint_shapedirs (J, 3, K); posedirs (9 (J-1), 3 V) or None; num_betas K;
        beta_names (list of K str); vertex_sets: name -> LongTensor of vertex indices
        ("left_hand", "right_hand": vertices skinned mostly to that wrist and its fingers);
        face_tables: an SMPL-X file's landmark tables (mimo/body/face.py) or None.
    """

    def __init__(self, *, kind: str, v_template, faces, shapedirs, joint_template, joint_shapedirs,
                 weights, parents, joint_names, posedirs=None, beta_names=None,
                 face_tables: torch.nn.Module | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.joint_names = [str(n) for n in joint_names]
        self.parents = [int(p) for p in parents]
        J = len(self.parents)
        V = int(np.shape(v_template)[0])
        self.num_betas = int(np.shape(shapedirs)[-1])
        self.beta_names = ([str(n) for n in beta_names] if beta_names is not None
                           else [f"beta{k}" for k in range(self.num_betas)])
        t = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype)  # noqa: E731
        self.register_buffer("rest_vertices", t(v_template).reshape(V, 3))
        self.register_buffer("faces", torch.as_tensor(np.asarray(faces, dtype=np.int64)))
        self.register_buffer("shapedirs", t(shapedirs).reshape(V, 3, self.num_betas))
        self.register_buffer("rest_joints", t(joint_template).reshape(J, 3))
        self.register_buffer("joint_shapedirs", t(joint_shapedirs).reshape(J, 3, self.num_betas))
        self.register_buffer("skin_weights", t(weights).reshape(V, J))
        self.register_buffer("posedirs", None if posedirs is None
                             else t(posedirs).reshape(9 * (J - 1), 3 * V))
        # per depth level of the tree: (joint indices, their parents); moved with the module
        parents_t = torch.tensor(self.parents)
        self._levels = [(lv, parents_t[lv]) for lv in _levels(self.parents)]
        self._parent_index = parents_t
        owner = self.skin_weights.argmax(1)
        self.vertex_sets: dict[str, torch.Tensor] = {}
        for name, joints in HAND_JOINTS.items():
            ids = [self.joint_names.index(j) for j in joints if j in self.joint_names]
            self.vertex_sets[name] = torch.nonzero(torch.isin(owner, torch.tensor(ids)))[:, 0]
        self.has_hands = "left_index1" in self.joint_names
        #: facial landmark tables (mimo/body/face.py: FaceTables) where the model file has them
        self.face_tables = face_tables

    @property
    def num_vertices(self) -> int:
        return int(self.rest_vertices.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    def _apply(self, fn, *args, **kwargs):  # keep index tensors on the module's device
        super()._apply(fn, *args, **kwargs)
        dev = self.faces.device
        self.vertex_sets = {k: v.to(dev) for k, v in self.vertex_sets.items()}
        self._levels = [(lv.to(dev), p.to(dev)) for lv, p in self._levels]
        self._parent_index = self._parent_index.to(dev)
        return self

    # ----------------------------------------------------------------------------------------
    def _check(self, name: str, x, shape: tuple, batch: int | None) -> torch.Tensor:
        """Validate one parameter: floating, finite, of ``shape`` (None = any size there)."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        if not x.is_floating_point():
            raise FieldError(name, f"expected a floating-point tensor, got dtype {x.dtype}")
        want = tuple("B" if s is None and i == 0 else s for i, s in enumerate(shape))
        ok = x.ndim == len(shape) and all(s is None or x.shape[i] == s
                                          for i, s in enumerate(shape))
        if ok and batch is not None and x.shape[0] != batch:
            ok = False
            want = (batch,) + tuple(want[1:])
        if not ok:
            raise FieldError(name, f"expected shape {want}, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise FieldError(name, "contains NaN or inf")
        return x.to(device=self.rest_vertices.device, dtype=self.rest_vertices.dtype)

    def forward(self, global_orient, body_pose, betas=None, transl=None, left_hand_pose=None,
                right_hand_pose=None) -> BodyOutput:
        """Pose the body.

        Args:
            global_orient: axis-angle of the pelvis (root) in model space.
            body_pose: 21 body joints (SMPL-H/SMPL-X order, pelvis excluded) or 23 (SMPL order).
                The open body, SMPL-H and SMPL-X ignore SMPL's two extra hand joints; SMPL gets
                zero rotations for them when 21 are given.
            betas: shape coefficients; fewer than ``num_betas`` are zero-padded.
            transl: added to every vertex and joint.
            left_hand_pose, right_hand_pose: 15 finger joints each (index, middle, pinky, ring,
                thumb), relative to the flat hand; ignored by SMPL (no finger joints).

        Shapes:
            global_orient (B, 3), body_pose (B, 21, 3) or (B, 23, 3), betas (B, K<=num_betas),
            transl (B, 3), left_hand_pose / right_hand_pose (B, 15, 3)
            -> BodyOutput(vertices (B, V, 3), joints (B, J, 3))
        """
        go = self._check("global_orient", global_orient, (None, 3), None)
        B = go.shape[0]
        bp = body_pose if isinstance(body_pose, torch.Tensor) else torch.as_tensor(
            np.asarray(body_pose))
        n_body = bp.shape[1] if bp.ndim == 3 else -1
        if n_body not in (NUM_BODY_JOINTS, NUM_SMPL_BODY_JOINTS):
            raise FieldError("body_pose", f"expected shape (B, {NUM_BODY_JOINTS}, 3) or "
                             f"(B, {NUM_SMPL_BODY_JOINTS}, 3), got {tuple(bp.shape)}")
        bp = self._check("body_pose", bp, (None, n_body, 3), B)
        hands = []
        for name, h in (("left_hand_pose", left_hand_pose), ("right_hand_pose", right_hand_pose)):
            hands.append(torch.zeros(B, NUM_HAND_JOINTS, 3, dtype=go.dtype, device=go.device)
                         if h is None else self._check(name, h, (None, NUM_HAND_JOINTS, 3), B))
        if betas is None:
            betas = torch.zeros(B, self.num_betas, dtype=go.dtype, device=go.device)
        else:
            betas = self._check("betas", betas, (None, None), B)
            if betas.shape[1] > self.num_betas:
                raise FieldError("betas", f"expected shape (B, <= {self.num_betas}) for this "
                                 f"{self.kind} body, got {tuple(betas.shape)}")
            betas = torch.nn.functional.pad(betas, (0, self.num_betas - betas.shape[1]))
        transl = None if transl is None else self._check("transl", transl, (None, 3), B)

        zeros = lambda n: torch.zeros(B, n, 3, dtype=go.dtype, device=go.device)  # noqa: E731
        if self.kind == "smpl":
            body = bp if n_body == NUM_SMPL_BODY_JOINTS else torch.cat([bp, zeros(2)], 1)
            parts = [go[:, None], body]
        else:
            parts = [go[:, None], bp[:, :NUM_BODY_JOINTS]]
            if self.kind == "smplx":
                parts.append(zeros(3))  # jaw, eyes
            parts += hands
        pose = torch.cat(parts, 1)  # (B, J, 3)
        return self.lbs(pose, betas, transl)

    def lbs(self, pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor | None = None
            ) -> BodyOutput:
        """Skin from a full pose (no input checks; use :meth:`forward`).

        Shapes:
            pose (B, J, 3) axis-angle, betas (B, K), transl (B, 3) -> BodyOutput
        """
        B, J = pose.shape[:2]
        V = self.num_vertices
        v = self.rest_vertices + torch.einsum("bk,vik->bvi", betas, self.shapedirs)
        joints = self.rest_joints + torch.einsum("bk,jik->bji", betas, self.joint_shapedirs)
        rot = axis_angle_to_matrix(pose)  # (B, J, 3, 3)
        if self.posedirs is not None:
            eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
            feature = (rot[:, 1:] - eye).reshape(B, -1)
            v = v + (feature @ self.posedirs).reshape(B, V, 3)
        rel = joints.clone()
        rel[:, 1:] -= joints[:, self._parent_index[1:]]
        g_rot = torch.empty_like(rot)
        g_pos = torch.empty_like(joints)
        for depth, (level, p) in enumerate(self._levels):
            if depth == 0:  # the root
                g_rot[:, level] = rot[:, level]
                g_pos[:, level] = rel[:, level]
                continue
            g_rot[:, level] = g_rot[:, p] @ rot[:, level]
            g_pos[:, level] = (g_rot[:, p] @ rel[:, level, :, None])[..., 0] + g_pos[:, p]
        # skinning transform per joint: x -> R (x - j) + p, as a 3x4 matrix
        offset = g_pos - (g_rot @ joints[..., None])[..., 0]
        A = torch.cat([g_rot, offset[..., None]], dim=-1).reshape(B, J, 12)
        T = torch.matmul(self.skin_weights, A).reshape(B, V, 3, 4)
        verts = (T[..., :3] @ v[..., None])[..., 0] + T[..., 3]
        if transl is not None:
            verts = verts + transl[:, None]
            g_pos = g_pos + transl[:, None]
        face = (None if self.face_tables is None
                else self.face_tables(verts, g_rot[:, self.joint_names.index("neck")]))
        return BodyOutput(vertices=verts, joints=g_pos, face=face)

    def shaped_rest(self, betas: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest (zero-pose) vertices and joints for shape ``betas``.

        Shapes:
            betas (B, K) -> vertices (B, V, 3), joints (B, J, 3)
        """
        if betas is None:
            return self.rest_vertices[None], self.rest_joints[None]
        betas = self._check("betas", betas, (None, self.num_betas), None)
        return (self.rest_vertices + torch.einsum("bk,vik->bvi", betas, self.shapedirs),
                self.rest_joints + torch.einsum("bk,jik->bji", betas, self.joint_shapedirs))
