"""Turn a wire :class:`~server.protocol.GenerateRequest` into a :class:`mimo.pipeline.job.GenerationJob`:
decode the character image, pose the body model(s), render the structured motion codes.

This runs on the worker thread (it may use the GPU). Errors are ``ValueError`` whose message starts
with the request field at fault (``"character: ..."``), which the server turns into an
``invalid_field`` error.
"""
from __future__ import annotations

import io
import threading

import numpy as np

from mimo.pipeline.job import GenerationJob

from .protocol import GenerateRequest

MAX_CHARACTER_PIXELS = 8192 * 8192
RENDER_PIXELS = 1 << 28  # output pixels per rasterizer call (frames x height x width)
_BODY_CACHE: dict[tuple[str, str], object] = {}
_BODY_LOCK = threading.Lock()


def decode_character(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> RGB image (alpha composited on white, as the official scripts do).

    Shapes: -> (Hc, Wc, 3) uint8
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_CHARACTER_PIXELS:
                raise ValueError(f"character: {im.width}x{im.height} pixels, limit {MAX_CHARACTER_PIXELS}")
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, rgba)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except ValueError:
        raise
    except Exception as exc:  # PIL raises many types on corrupt data
        raise ValueError(f"character: not a decodable PNG/JPEG image ({type(exc).__name__}: {exc})") from None


def scaled_intrinsics(K: np.ndarray, cam_size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """Re-express ``K`` for another image size. With pixel centres at (u + 0.5, v + 0.5) and the
    origin at the top-left corner (docs/CONVENTIONS.md), scaling rows 0 and 1 by the size ratio is exact.

    Shapes: K (F, 3, 3) -> (F, 3, 3) float64; sizes are (width, height)
    """
    sx, sy = out_size[0] / cam_size[0], out_size[1] / cam_size[1]
    K = np.array(K, dtype=np.float64)
    K[:, 0] *= sx
    K[:, 1] *= sy
    return K


def available_body_models() -> list[str]:
    """Body models this server can load now: ``open`` (shipped) plus each SMPL-family kind whose
    licensed file is installed (see :func:`mimo.body.default_models_dir`)."""
    from mimo.body import loading

    found = ["open"]
    for kind in ("smpl", "smplh", "smplx"):
        try:
            loading._find_model_file(kind)
        except (FileNotFoundError, AttributeError):
            continue
        found.append(kind)
    return found


def body_model_betas(models: list[str], device: str | None = None) -> dict[str, int]:
    """Shape coefficients each body model takes, loading each once (and keeping it for the jobs).
    A model whose file does not load is left out, with a warning in the log."""
    import logging

    out = {}
    for model in models:
        try:
            out[model] = int(load_body_cached(model, device).num_betas)
        except ValueError as exc:
            logging.getLogger("mimo.server").warning("body model %r not offered: %s", model, exc)
    return out


def load_body_cached(model: str, device: str | None):
    """One body model per (name, device), loaded once and kept (like the backends' networks)."""
    key = (model, str(device))
    with _BODY_LOCK:
        if key not in _BODY_CACHE:
            from mimo.body import load_body

            try:
                _BODY_CACHE[key] = load_body(model, device=device)
            except (FileNotFoundError, ValueError) as exc:
                raise ValueError(f"body_model: {model!r} is not available on this server ({exc})") from None
        return _BODY_CACHE[key]


def pose_body(body, params, name: str = "body"):
    """One body's per-frame params -> ``(vertices, faces, vertex_colors)`` for the rasterizer.
    The default code table is the body's normalised rest pose (docs/MIMO.md §9). A hand whose pose is
    absent is removed from the mesh, as the official renderer did for undetected hands (send
    zeros for a visible flat hand).

    Shapes: -> vertices (F, V, 3) float32 tensor, faces (T', 3) int64, vertex_colors (V, 3)
    """
    import torch

    from mimo.codes import default_code_table, remove_faces

    F = params.global_orient.shape[0]
    betas = np.asarray(params.betas, dtype=np.float32)
    if betas.ndim == 1:
        betas = np.broadcast_to(betas, (F, betas.shape[0]))
    t = lambda a: None if a is None else torch.as_tensor(np.array(a, dtype=np.float32))  # noqa: E731
    try:
        out = body(global_orient=t(params.global_orient), body_pose=t(params.body_pose),
                   betas=t(betas), transl=t(params.transl),
                   left_hand_pose=t(params.left_hand_pose), right_hand_pose=t(params.right_hand_pose))
    except ValueError as exc:
        raise ValueError(f"{name}.{exc}") from None
    faces = body.faces.cpu().numpy()
    if getattr(body, "has_hands", False):
        for side in ("left", "right"):
            if getattr(params, f"{side}_hand_pose") is None:
                faces = remove_faces(faces, body.vertex_sets[f"{side}_hand"].cpu().numpy())
    if not hasattr(body, "_mimo_code_table"):
        body._mimo_code_table = default_code_table(body.rest_vertices.cpu().numpy())
    return out.vertices.float(), torch.as_tensor(faces, device=out.vertices.device), \
        torch.as_tensor(body._mimo_code_table, device=out.vertices.device)


def render_request_codes(req: GenerateRequest, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pose every body of ``req``, merge them, and rasterize the motion codes for its camera.

    Shapes: -> codes (F, H, W, 3) uint8, mask (F, H, W) bool
    """
    import torch

    from mimo.codes import concat_meshes, render_codes

    body = load_body_cached(req.body_model, device)
    meshes = [pose_body(body, params, f"bodies[{i}]") for i, params in enumerate(req.bodies)]
    vertices, faces, colors = concat_meshes(meshes)
    cam = req.camera
    K = scaled_intrinsics(cam.K, (cam.width, cam.height), (req.width, req.height))
    K[:, 1, 0], K[:, 2] = 0.0, (0.0, 0.0, 1.0)  # validated close to these; the rasterizer wants them exact
    if not torch.isfinite(vertices).all():
        raise ValueError("bodies: the posed body has non-finite vertices (pose, shape or "
                         "translation values too large)")
    dev = vertices.device if isinstance(vertices, torch.Tensor) else torch.device(device or "cpu")
    F = vertices.shape[0]
    step = max(1, RENDER_PIXELS // (req.width * req.height))  # frames per rasterizer call
    codes = np.empty((F, req.height, req.width, 3), np.uint8)
    mask = np.empty((F, req.height, req.width), bool)
    wire = {"K": "camera.K", "R": "camera.R", "t": "camera.t", "vertices": "bodies"}
    for a in range(0, F, step):
        b = min(F, a + step)
        try:
            c, m = render_codes(vertices[a:b], faces, colors, torch.as_tensor(K[a:b], device=dev),
                                torch.as_tensor(np.array(cam.R[a:b]), device=dev),
                                torch.as_tensor(np.array(cam.t[a:b]), device=dev),
                                req.width, req.height, return_mask=True)
        except ValueError as exc:  # name the request's field, not the rasterizer's argument
            name, sep, rest = str(exc).partition(": ")
            raise ValueError(f"{wire[name]}: {rest}" if sep and name in wire else str(exc)) from None
        codes[a:b], mask[a:b] = c.cpu().numpy(), m.cpu().numpy()
    return codes, mask


def build_job(req: GenerateRequest, device: str | None = None) -> GenerationJob:
    """Wire request -> backend job (decoded image, rendered codes, layers copied out of the
    receive buffers so the backend gets ordinary writable arrays).

    Shapes: see :mod:`mimo.pipeline.job`.
    """
    character = decode_character(req.character)
    if req.codes is not None:
        codes, mask = np.array(req.codes), None
    else:
        codes, mask = render_request_codes(req, device)
    job = GenerationJob(
        character=character, codes=codes, fps=float(req.fps), code_mask=mask,
        scene=None if req.scene is None else np.array(req.scene),
        occlusion=None if req.occlusion is None else np.array(req.occlusion),
        occlusion_source=None if req.occlusion_source is None else np.array(req.occlusion_source),
        steps=req.steps, cfg=float(req.cfg), seed=req.seed, context=req.context,
        overlap=req.overlap, mode=req.mode, roi_size=req.roi_size, raw=req.raw)
    job.validate()
    return job
