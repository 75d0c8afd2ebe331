"""Control passes of a motion clip for other pose-driven video models, from the 3D bodies rather
than estimated from a video: what ``mimo export`` writes (the Blender add-on's *Export Passes*
writes the same files from a Blender scene).

Per frame: the body mask, depth (OpenCV ``z`` in metres, 0 where no body), camera-space normals
(OpenCV axes: x right, y down, z forward; 0 where no body) and the joints for OpenPose-layout
keypoints (:mod:`mimo.codes.keypoints`). Depth is the rasterizer's exact per-pixel depth; normals
are the bodies' vertex normals interpolated across each triangle, carried through the rasterizer's
8-bit colour output, so each component is within about 1/127 of the smooth normal.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mimo.codes.keypoints import FACE_70
from mimo.codes.raster import render_codes
from mimo.codes.render import FRAMES_PER_CHUNK, _camera_arrays, _per_body


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (outward for counter-clockwise faces).

    Shapes: vertices (B, V, 3), faces (T, 3) -> (B, V, 3)
    """
    a, b, c = (vertices[:, faces[:, k]] for k in range(3))
    n = torch.cross(b - a, c - a, dim=-1)  # (B, T, 3), length = 2 x area
    out = torch.zeros_like(vertices)
    for k in range(3):
        out.index_add_(1, faces[:, k], n)
    return torch.nn.functional.normalize(out, dim=-1)


def render_passes(clip, camera, body, size: tuple[int, int] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Mask, depth, normals and joints of every frame of ``clip`` seen by ``camera``.

    Args: as :func:`mimo.codes.render.render_clip` (``camera`` None: the official default camera).

    Shapes:
        -> mask (F, H, W) bool, depth (F, H, W) float32, normal (F, H, W, 3) float32,
           joints: F lists (one per body) of {joint name: (3,) world} (and the face points
           ``face_00``..``face_69`` of a body whose model defines them), K (F, 3, 3), R, t, width, height
    """
    bodies = _per_body("body", body, len(clip.bodies))
    F = clip.num_frames
    K, R, t, W, H = _camera_arrays(camera, F, size)
    device = bodies[0].rest_vertices.device
    faces, offset = [], 0
    for b in bodies:
        faces.append(b.faces.to(device) + offset)
        offset += b.num_vertices
    faces = torch.cat(faces)
    mask = np.zeros((F, H, W), bool)
    depth = np.zeros((F, H, W), np.float32)
    normal = np.zeros((F, H, W, 3), np.float32)
    joints: list[list[dict]] = [[] for _ in range(F)]
    for start in range(0, F, FRAMES_PER_CHUNK):
        stop = min(F, start + FRAMES_PER_CHUNK)
        verts = []
        for track, b in zip(clip.bodies, bodies):
            dtype = b.rest_vertices.dtype
            params = {k: torch.as_tensor(np.ascontiguousarray(v), dtype=dtype, device=device)
                      for k, v in track.params(start, stop).items()}
            with torch.no_grad():
                out = b(**params)
            verts.append(out.vertices.float())
            names = list(b.joint_names)
            face = None if out.face is None else out.face.double().cpu().numpy()
            for i, frame_joints in enumerate(out.joints.double().cpu().numpy()):
                named = dict(zip(names, frame_joints))
                if face is not None:  # the OpenPose face points the model defines
                    named.update((n, p) for n, p in zip(FACE_70, face[i]) if np.isfinite(p).all())
                joints[start + i].append(named)
        v = torch.cat(verts, 1)
        Rt = torch.as_tensor(R[start:stop], dtype=torch.float32, device=device)
        n_cam = torch.einsum("bij,bvj->bvi", Rt, vertex_normals(v, faces))  # world -> camera axes
        with torch.no_grad():
            c, m, d = render_codes(v, faces, (n_cam + 1) / 2,
                                   torch.as_tensor(K[start:stop], dtype=torch.float32, device=device), Rt,
                                   torch.as_tensor(t[start:stop], dtype=torch.float32, device=device),
                                   W, H, return_mask=True, return_depth=True)
        m = m.cpu().numpy()
        n = c.cpu().numpy().astype(np.float32) / 255.0 * 2.0 - 1.0
        n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
        mask[start:stop] = m
        depth[start:stop] = np.where(m, d.cpu().numpy(), 0.0)
        normal[start:stop] = np.where(m[..., None], n, 0.0)
        if progress is not None:
            progress(stop, F)
    return {"mask": mask, "depth": depth, "normal": normal, "joints": joints,
            "K": K, "R": R, "t": t, "width": W, "height": H}
