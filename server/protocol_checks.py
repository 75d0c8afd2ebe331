"""The mimo-blender wire protocol, part 3 of 3: ``validate_request``, the field-by-field check of a
generation request, shared by client and server (the client checks before it sends; the whole
protocol: :mod:`server.protocol`, server/PROTOCOL.md).

Vendored byte-identical into the Blender add-on with the other parts: imports only the standard
library, ``numpy`` and its sibling :mod:`protocol_messages`.
"""
from __future__ import annotations

import math
import typing

import numpy as np

from .protocol_messages import BODY_MODELS, DEFAULT_LIMITS, BodyParams, CameraParams, GenerateRequest, ProtocolError

#: Largest magnitude a finite request value may have (wider than any real scene; keeps float32
#: maths on the server finite).
MAX_ANGLE, MAX_METRES, MAX_BETA, MAX_PIXELS_K = 1e3, 1e5, 1e3, 1e8
#: Longest context window (the motion modules' positional table).
MAX_CONTEXT = 32


def _show(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error never echoes a whole bad field."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate_request(req: GenerateRequest, limits: dict[str, int] | None = None,
                     body_betas: dict[str, int] | None = None, modes: typing.Iterable[str] | None = None) -> None:
    """Check every field of a request against ``limits`` (default :data:`DEFAULT_LIMITS`) and,
    where given, the number of shape coefficients each body model takes (``body_betas``) and the
    generation modes (``modes``), as in :class:`Capabilities`. Raises :class:`ProtocolError`
    with code ``"invalid_field"`` naming the first bad field as the request names it
    (``"bodies[0].betas"``). Whether the image decodes, whether the backend exists and what the
    mode's own context allows is for the server to check.

    Shapes:
        see the module docstring; every per-frame array has the same F.
    """
    lim = {**DEFAULT_LIMITS, **(limits or {})}

    def bad(field: str, message: str) -> ProtocolError:
        return ProtocolError("invalid_field", message, field)

    if not isinstance(req, GenerateRequest):
        raise bad("request", f"expected a GenerateRequest, got {type(req).__name__}")
    if not isinstance(req.character, bytes) or not req.character:
        raise bad("character", "expected PNG or JPEG bytes, got nothing")
    if len(req.character) > lim["max_image_bytes"]:
        raise bad("character", f"{len(req.character)} bytes, limit {lim['max_image_bytes']}")
    if not (req.character.startswith(b"\x89PNG\r\n\x1a\n") or req.character.startswith(b"\xff\xd8")):
        raise bad("character", "expected PNG or JPEG bytes (by their signature)")
    for name in ("width", "height"):
        v = getattr(req, name)
        if not (type(v) is int and lim["min_side"] <= v <= lim["max_side"] and v % 8 == 0):
            raise bad(name, f"expected a multiple of 8 in {lim['min_side']}..{lim['max_side']}, got {v!r}")
    H, W = req.height, req.width
    _check_number(bad, "fps", req.fps, 0, 240, low_open=True)
    if req.steps is not None:
        _check_int(bad, "steps", req.steps, 1, 1000)
    _check_number(bad, "cfg", req.cfg, 0, 50)
    _check_int(bad, "seed", req.seed, 0, 2**63 - 1)
    if req.context is not None:
        _check_int(bad, "context", req.context, 1, MAX_CONTEXT)
    if req.overlap is not None:  # against the mode's own context the job checks it once more
        _check_int(bad, "overlap", req.overlap, 0, (req.context or MAX_CONTEXT) - 1)
    if not (isinstance(req.mode, str) and req.mode):
        raise bad("mode", f"expected a mode name, got {_show(req.mode)}")
    if modes is not None and req.mode not in modes:
        raise bad("mode", f"expected one of {', '.join(modes)}, got {_show(req.mode)}")
    if not (isinstance(req.backend, str) and req.backend):
        raise bad("backend", f"expected a backend name, got {_show(req.backend)}")
    if req.roi_size is not None and not (
            type(req.roi_size) is int and 64 <= req.roi_size <= lim["max_side"] and req.roi_size % 8 == 0):
        raise bad("roi_size", f"expected a multiple of 8 in 64..{lim['max_side']}, got {req.roi_size!r}")
    for name in ("raw", "preview"):
        if type(getattr(req, name)) is not bool:
            raise bad(name, f"expected a bool, got {getattr(req, name)!r}")

    if req.codes is not None:
        if req.bodies or req.camera is not None:
            raise bad("codes", "give either codes or bodies + camera, not both")
        F = _check_array(bad, "codes", req.codes, (None, H, W, 3), "u")
    else:
        if req.body_model not in BODY_MODELS:
            raise bad("body_model", f"expected one of {BODY_MODELS}, got {_show(req.body_model)}")
        if req.camera is None:
            raise bad("camera", "required when motion comes as bodies (or send codes)")
        F = _check_camera(bad, req.camera, lim)
        if not 1 <= len(req.bodies) <= lim["max_bodies"]:
            raise bad("bodies", f"expected 1..{lim['max_bodies']} bodies, got {len(req.bodies)}")
        joints = 23 if req.body_model == "smpl" else 21
        max_betas = min(lim["max_betas"], (body_betas or {}).get(req.body_model, lim["max_betas"]))
        for i, body in enumerate(req.bodies):
            _check_body(bad, f"bodies[{i}]", body, F, joints, req.body_model, max_betas)
    if not 1 <= F <= lim["max_frames"]:
        raise bad("codes" if req.codes is not None else "camera.K",
                  f"expected 1..{lim['max_frames']} frames, got {F}")
    if req.scene is not None:
        _check_array(bad, "scene", req.scene, (F, H, W, 3), "u")
    if req.occlusion is not None:
        _check_array(bad, "occlusion", req.occlusion, (F, H, W), "u")
        if req.scene is None:
            raise bad("occlusion", "needs the scene frames whose pixels it puts in front")
    if req.occlusion_source is not None:
        _check_array(bad, "occlusion_source", req.occlusion_source, (F, H, W, 3), "u")


def _check_int(bad, name, v, lo, hi):
    if not (type(v) is int and lo <= v <= hi):
        raise bad(name, f"expected an integer in {lo}..{hi}, got {v!r}")


def _check_number(bad, name, v, lo, hi, low_open=False):
    ok = type(v) in (int, float) and math.isfinite(v) and (lo < v if low_open else lo <= v) and v <= hi
    if not ok:
        raise bad(name, f"expected a number in {'(' if low_open else '['}{lo}, {hi}], got {v!r}")


def _check_array(bad, name, a, shape, kinds, bound: float = math.inf) -> int:
    """Check type, dtype kind ("u": uint8 only; "f": float32/float64, finite, magnitude at most
    ``bound``) and shape, where ``None`` in ``shape`` matches any size. Returns the first
    dimension."""
    if not isinstance(a, np.ndarray):
        raise bad(name, f"expected an array, got {type(a).__name__}")
    if kinds == "u" and a.dtype != np.uint8:
        raise bad(name, f"expected dtype uint8, got {a.dtype}")
    if kinds == "f":
        if a.dtype not in (np.float32, np.float64):
            raise bad(name, f"expected dtype float32 or float64, got {a.dtype}")
        if not np.isfinite(a).all():
            raise bad(name, "contains NaN or infinite values")
        if a.size and float(np.abs(a).max()) > bound:
            raise bad(name, f"values up to {float(np.abs(a).max()):.3g}, limit ±{bound:g}")
    want = "(" + ", ".join("F" if n is None else str(n) for n in shape) + ")"
    if a.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, a.shape)):
        raise bad(name, f"expected shape {want}, got {tuple(a.shape)}")
    if a.size == 0 and a.ndim and a.shape[0] == 0:
        raise bad(name, "has no frames")
    return int(a.shape[0]) if a.ndim else 0


def _check_camera(bad, cam: CameraParams, lim) -> int:
    if not isinstance(cam, CameraParams):
        raise bad("camera", f"expected CameraParams, got {type(cam).__name__}")
    for name in ("width", "height"):
        v = getattr(cam, name)
        if not (type(v) is int and 1 <= v <= 8 * lim["max_side"]):
            raise bad(f"camera.{name}", f"expected pixels in 1..{8 * lim['max_side']}, got {v!r}")
    F = _check_array(bad, "camera.K", cam.K, (None, 3, 3), "f", MAX_PIXELS_K)
    _check_array(bad, "camera.R", cam.R, (F, 3, 3), "f", 2.0)
    _check_array(bad, "camera.t", cam.t, (F, 3), "f", MAX_METRES)
    K = cam.K.astype(np.float64)
    if not (np.all(K[:, 0, 0] > 0) and np.all(K[:, 1, 1] > 0)):
        raise bad("camera.K", "focal lengths K[0,0] and K[1,1] must be positive")
    if not (np.allclose(K[:, 1, 0], 0) and np.allclose(K[:, 2, :2], 0) and np.allclose(K[:, 2, 2], 1)):
        raise bad("camera.K", "expected rows [fx s cx], [0 fy cy], [0 0 1]")
    R = cam.R.astype(np.float64)
    err = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max()
    if err > 1e-3 or np.any(np.linalg.det(R) < 0):
        raise bad("camera.R", f"expected rotation matrices (orthonormal, det +1); max error {err:.3g}")
    return F


def _check_body(bad, name, body, F, joints, model, max_betas) -> None:
    if not isinstance(body, BodyParams):
        raise bad(name, f"expected BodyParams, got {type(body).__name__}")
    _check_array(bad, f"{name}.global_orient", body.global_orient, (F, 3), "f", MAX_ANGLE)
    _check_array(bad, f"{name}.body_pose", body.body_pose, (F, joints, 3), "f", MAX_ANGLE)
    _check_array(bad, f"{name}.transl", body.transl, (F, 3), "f", MAX_METRES)
    b = body.betas
    if not isinstance(b, np.ndarray) or b.ndim not in (1, 2):
        raise bad(f"{name}.betas", f"expected shape (NB,) or (F, NB), got "
                  f"{getattr(b, 'shape', type(b).__name__)}")
    if not 1 <= b.shape[-1] <= max_betas:
        raise bad(f"{name}.betas", f"expected 1..{max_betas} coefficients for the {model!r} body "
                  f"model, got {b.shape[-1]}")
    shape = (b.shape[0],) if b.ndim == 1 else (F, b.shape[1])
    _check_array(bad, f"{name}.betas", b, shape, "f", MAX_BETA)
    for hand in ("left_hand_pose", "right_hand_pose"):
        h = getattr(body, hand)
        if h is not None:
            if model == "smpl":
                raise bad(f"{name}.{hand}", "the 'smpl' body model has no hand joints")
            _check_array(bad, f"{name}.{hand}", h, (F, 15, 3), "f", MAX_ANGLE)
