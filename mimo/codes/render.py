"""Render a whole MotionClip to structured motion codes: what the job builder
(:mod:`mimo.pipeline.prepare`, for ``mimo generate`` and the server) and ``mimo codes`` call.

Errors name the clip's parts as the wire request does (``bodies[0].betas``, ``camera``), as
:class:`~mimo.errors.FieldError`.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mimo.codes.camera import auto_camera, official_camera
from mimo.codes.raster import render_codes
from mimo.codes.tables import default_code_table
from mimo.codes.tables import remove_hands as _remove_hands
from mimo.errors import FieldError

FRAMES_PER_CHUNK = 64
RENDER_PIXELS = 1 << 28  # output pixels per rasterizer call at most (frames x height x width)


def _per_body(name: str, value, n: int) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise FieldError(name, f"expected one per clip body ({n}), got {len(value)}")
        return list(value)
    return [value] * n


def _camera_arrays(camera, num_frames: int, size):
    """(K, R, t, W, H) from a CameraTrack, or the official default camera when ``camera`` is None."""
    if camera is None:
        if size is None:
            raise FieldError("size", "expected (width, height) when no camera is given, got None")
        W, H = size
        K, R, t = official_camera(int(W), int(H), num_frames)
        return K, R, t, int(W), int(H)
    K, R, t = (np.asarray(x, dtype=np.float64) for x in (camera.K, camera.R, camera.t))
    if K.shape[0] not in (1, num_frames):
        raise FieldError("camera", f"expected 1 or {num_frames} frames like the clip, got {K.shape[0]}")
    if K.shape[0] == 1:
        K, R, t = (np.repeat(x, num_frames, 0) for x in (K, R, t))
    W, H = int(camera.width), int(camera.height)
    if size is not None and tuple(size) != (W, H):
        # Pixel edges at integers (docs/CONVENTIONS.md): resizing the image scales K's rows exactly.
        sx, sy = size[0] / W, size[1] / H
        K = K * np.array([[sx], [sy], [1.0]])
        W, H = int(size[0]), int(size[1])
    return K, R, t, W, H


def pose_bodies(clip, bodies, start: int, stop: int) -> list[torch.Tensor]:
    """Vertices of every clip body for frames ``start:stop``.

    Shapes: -> list over bodies of (F', V_i, 3) tensors on each body model's device
    """
    out = []
    for i, (track, body) in enumerate(zip(clip.bodies, bodies)):
        device, dtype = body.rest_vertices.device, body.rest_vertices.dtype
        params = {k: torch.as_tensor(np.ascontiguousarray(v), dtype=dtype, device=device)
                  for k, v in track.params(start, stop).items()}
        try:
            with torch.no_grad():
                vertices = body(**params).vertices
        except FieldError as exc:
            raise FieldError(f"bodies[{i}].{exc.field}", exc.message) from None
        if not torch.isfinite(vertices).all():
            raise FieldError(f"bodies[{i}]", "the posed body has non-finite vertices (pose, shape or "
                                             "translation values too large)")
        out.append(vertices)
    return out


def auto_camera_track(clip, body, width: int, height: int, margin: float = 0.05, focal: float | None = None):
    """A fixed CameraTrack (front view, official focal length unless ``focal``) framing the whole clip.

    ``body`` is one BodyModel for every clip body, or a sequence with one per body.

    Shapes: -> CameraTrack with F = clip.num_frames
    """
    from mimo.motion import CameraTrack

    bodies = _per_body("body", body, len(clip.bodies))
    pts = []
    for start in range(0, clip.num_frames, FRAMES_PER_CHUNK):
        stop = min(clip.num_frames, start + FRAMES_PER_CHUNK)
        for v in pose_bodies(clip, bodies, start, stop):
            pts.append(v.reshape(-1, 3).double().cpu().numpy())
    K, R, t = auto_camera(np.concatenate(pts), width, height, margin=margin, focal=focal,
                          num_frames=clip.num_frames)
    return CameraTrack(K, R, t, width, height, fps=clip.fps).validate()


def render_clip(clip, camera, body, table=None, remove_hands: bool | str = False, *,
                size: tuple[int, int] | None = None, device: str | torch.device | None = None,
                progress: Callable[[int, int], None] | None = None):
    """Structured motion codes of every frame of a MotionClip (several bodies share each frame).

    Args:
        clip: ``mimo.motion.MotionClip``.
        camera: ``mimo.motion.CameraTrack`` with 1 or F frames, or None for the official default
            camera (origin, R = I, focal 5000/256·max(W, H); needs ``size``).
        body: BodyModel for every clip body, or a sequence with one per body.
        table: vertex colour table (V, 3) in [0, 1], or a sequence per body; None = each body's
            :func:`default_code_table` of its rest vertices.
        remove_hands: True drops every body's hand faces (``vertex_sets`` "left_hand",
            "right_hand"). "auto" — the rule of every front end (mimo generate, mimo codes, the
            server) — drops a hand only where the clip body has no pose for it and the body model
            has finger joints, as the official renderer did for undetected hands (zeros give a
            visible flat hand). False (the default for library callers such as the data
            synthesis) keeps them, flat where unposed.
        size: (width, height) of the output; with a camera of another size its K is rescaled.
        device: where to rasterize (default: the first body model's device).
        progress: called as ``progress(frames_done, frames_total)`` after each chunk.

    Shapes:
        -> codes (F, H, W, 3) uint8, mask (F, H, W) bool (numpy)
    """
    if remove_hands not in (True, False, "auto"):
        raise FieldError("remove_hands", f"expected True, False or 'auto', got {remove_hands!r}")
    n = len(clip.bodies)
    bodies = _per_body("body", body, n)
    tables = _per_body("table", table, n)
    F = clip.num_frames
    K, R, t, W, H = _camera_arrays(camera, F, size)
    if device is None:
        device = bodies[0].rest_vertices.device
    device = torch.device(device)
    faces, colors = [], []
    offset = 0
    for i, (b, tab) in enumerate(zip(bodies, tables)):
        V = b.num_vertices
        tab = default_code_table(b.rest_vertices.cpu().numpy()) if tab is None else np.asarray(tab)
        if tab.shape != (V, 3):
            raise FieldError("table", f"expected ({V}, 3) colours for body {i}, got {tab.shape}")
        f = b.faces.cpu().numpy()
        sets = {k: v.cpu().numpy() for k, v in b.vertex_sets.items()}
        if remove_hands is True:
            f = _remove_hands(f, sets)
        elif remove_hands == "auto" and getattr(b, "has_hands", False):  # SMPL has no finger pose to miss
            track = clip.bodies[i]
            hands = [f"{side}_hand" for side in ("left", "right")
                     if getattr(track, f"{side}_hand_pose") is None and f"{side}_hand" in sets]
            f = _remove_hands(f, sets, hands)
        faces.append(torch.as_tensor(f + offset))
        colors.append(torch.as_tensor(tab, dtype=torch.float32))
        offset += V
    faces = torch.cat(faces).to(device)
    colors = torch.cat(colors).to(device)
    Kt, Rt, tt = (torch.as_tensor(x, dtype=torch.float32, device=device) for x in (K, R, t))
    codes = np.zeros((F, H, W, 3), np.uint8)
    mask = np.zeros((F, H, W), bool)
    chunk = max(1, min(FRAMES_PER_CHUNK, RENDER_PIXELS // (W * H)))
    for start in range(0, F, chunk):
        stop = min(F, start + chunk)
        verts = torch.cat([v.to(device, torch.float32) for v in pose_bodies(clip, bodies, start, stop)], 1)
        try:
            c, m = render_codes(verts, faces, colors, Kt[start:stop], Rt[start:stop], tt[start:stop], W, H,
                                return_mask=True)
        except ValueError as exc:  # the inputs were checked: what is left is the camera's or the size's
            raise FieldError("camera", str(exc)) from None
        codes[start:stop] = c.cpu().numpy()
        mask[start:stop] = m.cpu().numpy()
        if progress is not None:
            progress(stop, F)
    return codes, mask
