"""A batched triangle rasterizer in plain PyTorch for structured motion codes (docs/MIMO.md §9).

Method: homogeneous (ray-cast) rasterization. For a triangle with camera-space corners P0, P1, P2
and the viewing ray d(u, v) = K⁻¹ (u + 0.5, v + 0.5, 1) through a pixel centre, the triple products
``w_i = d · (P_j × P_k)`` ((i, j, k) cyclic) are *linear* in the pixel coordinates, and

    barycentric b_i = w_i / Σw   (perspective-correct: these are the weights of the 3-D hit point)
    depth       z   = det(P0, P1, P2) / Σw   (camera-space z of the hit point, along the optical axis)

so each triangle is three edge functions with no division by vertex depth. Because nothing is
divided by a vertex's z, triangles with corners behind the camera need no special case: a pixel is
covered when every b_i >= 0 and z >= ``near``. That is exactly OpenGL's result after clipping the
triangle against the near plane (far plane: none). **Near plane: clipped** (per pixel, exact), not
dropped. Back faces are drawn (culling off); degenerate triangles (zero area, or seen edge-on) draw
nothing. Ties in depth go to the lower triangle index, like OpenGL's ``GL_LESS`` drawing in order.

Work is split into (triangle, row) pairs over each triangle's pixel-centre bounding box (of its
near-clipped polygon), each row narrowed to the span its three edges allow, then into (triangle,
pixel) fragments evaluated in vectorised chunks of at most ``max_fragments``; a z-buffer of packed
(depth bits, triangle index) int64 keys is resolved with ``scatter_reduce(amin)``; a final pass
interpolates the colours of the winning triangle per pixel. Frames are processed in groups so that
memory stays bounded for long clips.
"""
from __future__ import annotations

import math

import numpy as np
import torch

MAX_SIDE = 8192
MAX_OUTPUT_PIXELS = 1 << 32  # B·H·W per call (~13 GB of uint8 codes): render longer clips in parts
DEFAULT_NEAR = 0.05  # pyrender's IntrinsicsCamera default znear, which the official renderer used
_EMPTY_KEY = torch.iinfo(torch.int64).max
_CYCLIC = ((1, 2), (2, 0), (0, 1))


def _as_tensor(name: str, x, dtype: torch.dtype, device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    try:
        return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected an array, got {type(x).__name__} ({e})") from None


def _batched(name: str, x: torch.Tensor, B: int, tail: tuple[int, ...]) -> torch.Tensor:
    """Accept ``tail`` or ``(B, *tail)``; return ``(B, *tail)``."""
    if tuple(x.shape) == tail:
        return x.expand(B, *tail)
    if x.ndim == len(tail) + 1 and tuple(x.shape[1:]) == tail and x.shape[0] == B:
        return x
    want = "x".join(map(str, tail))
    raise ValueError(f"{name}: expected shape ({want}) or ({B}, {want.replace('x', ', ')}), "
                     f"got {tuple(x.shape)}")


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer number of pixels, got {value!r}")
    if not 1 <= int(value) <= MAX_SIDE:
        raise ValueError(f"{name}: expected 1..{MAX_SIDE} pixels, got {value}")
    return int(value)


def concat_meshes(meshes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge several meshes (e.g. several bodies in one shot) into one for :func:`render_codes`.

    ``meshes`` is a sequence of ``(vertices, faces, vertex_colors)``; every mesh must have the same
    number of frames B. Faces are offset by the vertex counts of the meshes before them, and
    triangle order (the depth tie-break) follows the list order.

    Shapes:
        vertices_i (B, V_i, 3), faces_i (T_i, 3), vertex_colors_i (V_i, 3) or (B, V_i, 3)
        -> vertices (B, ΣV, 3), faces (ΣT, 3), vertex_colors (B, ΣV, 3)
    """
    meshes = list(meshes)
    if not meshes:
        raise ValueError("meshes: expected at least one (vertices, faces, vertex_colors), got none")
    verts, faces, cols = [], [], []
    offset = 0
    B = None
    for i, mesh in enumerate(meshes):
        if len(mesh) != 3:
            raise ValueError(f"meshes[{i}]: expected (vertices, faces, vertex_colors), got {len(mesh)} items")
        v = _as_tensor(f"meshes[{i}].vertices", mesh[0], torch.float32, None)
        f = _as_tensor(f"meshes[{i}].faces", mesh[1], torch.int64, v.device)
        c = _as_tensor(f"meshes[{i}].vertex_colors", mesh[2], torch.float32, v.device)
        if v.ndim != 3 or v.shape[-1] != 3:
            raise ValueError(f"meshes[{i}].vertices: expected (B, V, 3), got {tuple(v.shape)}")
        if B is None:
            B = v.shape[0]
        elif v.shape[0] != B:
            raise ValueError(f"meshes[{i}].vertices: expected {B} frames like meshes[0], got {v.shape[0]}")
        verts.append(v)
        faces.append(f + offset)
        cols.append(_batched(f"meshes[{i}].vertex_colors", c, B, (v.shape[1], 3)))
        offset += v.shape[1]
    return torch.cat(verts, 1), torch.cat(faces, 0), torch.cat(cols, 1)


def _inverse_intrinsics(K: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of upper-triangular pinhole intrinsics (no LAPACK/cuSOLVER call).

    Shapes: K (B, 3, 3) -> (B, 3, 3)
    """
    Kd = K.double()
    fx, s, cx, fy, cy = Kd[:, 0, 0], Kd[:, 0, 1], Kd[:, 0, 2], Kd[:, 1, 1], Kd[:, 1, 2]
    inv = torch.zeros_like(Kd)
    inv[:, 0, 0] = 1 / fx
    inv[:, 0, 1] = -s / (fx * fy)
    inv[:, 0, 2] = (s * cy - cx * fy) / (fx * fy)
    inv[:, 1, 1] = 1 / fy
    inv[:, 1, 2] = -cy / fy
    inv[:, 2, 2] = 1
    return inv.float()


@torch.no_grad()
def render_codes(vertices, faces, vertex_colors, K, R, t, width: int, height: int,
                 return_mask: bool = False, return_depth: bool = False, *,
                 near: float = DEFAULT_NEAR, max_fragments: int | None = None,
                 frames_per_chunk: int | None = None):
    """Rasterize per-vertex colour codes: the structured motion code images of MIMO.

    Each pixel (u, v) is sampled at its centre (u + 0.5, v + 0.5) (origin top-left, docs/CONVENTIONS.md);
    its colour is the perspective-correct barycentric interpolation of ``vertex_colors`` over the
    nearest triangle covering that centre; no lighting, no gamma; background black; uint8 =
    round(colour × 255). The camera maps world points X to ``K (R X + t)`` (OpenCV: x right, y down,
    z forward). Surfaces nearer than ``near`` are clipped. Several meshes per frame: merge them with
    :func:`concat_meshes` first. Runs on the device of ``vertices`` (CPU or CUDA).

    Args:
        vertices: world-space vertex positions per frame (tensor or array).
        faces: triangle vertex indices, shared by all frames; winding does not matter.
        vertex_colors: colour code per vertex in [0, 1], shared or per frame.
        K, R, t: intrinsics, world-to-camera rotation and translation, shared or per frame.
        width, height: output size in pixels (1..8192).
        return_mask: also return the coverage mask.
        return_depth: also return camera-space depth (metres along the optical axis; inf where
            nothing is drawn).
        near: near clipping distance (metres, > 0).
        max_fragments: fragments evaluated at once (memory bound; default by device).
        frames_per_chunk: frames processed at once (default: z-buffer of at most ~2**25 pixels).

    Returns:
        ``codes`` if no extra output is requested, else the tuple ``(codes, mask?, depth?)`` with the
        requested extras in that order.

    Shapes:
        vertices (B, V, 3) float, faces (T, 3) int, vertex_colors (V, 3) or (B, V, 3) float,
        K (3, 3) or (B, 3, 3), R (3, 3) or (B, 3, 3), t (3,) or (B, 3)
        -> codes (B, H, W, 3) uint8, mask (B, H, W) bool, depth (B, H, W) float32
    """
    W = _check_size("width", width)
    H = _check_size("height", height)
    device = vertices.device if isinstance(vertices, torch.Tensor) else torch.device("cpu")
    v = _as_tensor("vertices", vertices, torch.float32, device)
    if v.ndim != 3 or v.shape[-1] != 3 or v.shape[0] < 1:
        raise ValueError(f"vertices: expected (B, V, 3) with B >= 1, got {tuple(v.shape)}")
    B, V = v.shape[:2]
    f = _as_tensor("faces", faces, torch.int64, device)
    if f.ndim != 2 or f.shape[-1] != 3:
        raise ValueError(f"faces: expected (T, 3), got {tuple(f.shape)}")
    if f.numel() and (int(f.min()) < 0 or int(f.max()) >= V):
        raise ValueError(f"faces: expected indices in [0, {V}), got [{int(f.min())}, {int(f.max())}]")
    if B * H * W > MAX_OUTPUT_PIXELS:
        raise ValueError(f"vertices: {B} frames of {W}x{H} exceed {MAX_OUTPUT_PIXELS} output pixels "
                         "per call; render the frames in parts")
    c = _batched("vertex_colors", _as_tensor("vertex_colors", vertex_colors, torch.float32, device), B, (V, 3))
    Kt = _batched("K", _as_tensor("K", K, torch.float32, device), B, (3, 3))
    Rt = _batched("R", _as_tensor("R", R, torch.float32, device), B, (3, 3))
    tt = _batched("t", _as_tensor("t", t, torch.float32, device), B, (3,))
    for name, x in (("vertices", v), ("vertex_colors", c), ("K", Kt), ("R", Rt), ("t", tt)):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
    if bool(((c < 0) | (c > 1)).any()):
        raise ValueError(f"vertex_colors: expected values in [0, 1], got [{float(c.min())}, {float(c.max())}]")
    bottom = torch.tensor([0.0, 0.0, 1.0], device=device)
    if not bool((Kt[:, 2] == bottom).all()) or not bool((Kt[:, 0, 0] * Kt[:, 1, 1] > 0).all()):
        raise ValueError("K: expected pinhole intrinsics [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with "
                         f"fx·fy > 0, got {Kt[0].tolist()} (first offending frame may differ)")
    if not (isinstance(near, (int, float)) and math.isfinite(near) and near > 0):
        raise ValueError(f"near: expected a finite distance > 0, got {near!r}")
    if max_fragments is None:
        max_fragments = 1 << 24 if device.type == "cuda" else 1 << 20
    if frames_per_chunk is None:
        # Bound the z-buffer (~2**25 pixels) and the per-triangle setup (~400 bytes a triangle).
        max_tris = 1 << 22 if device.type == "cuda" else 1 << 20
        frames_per_chunk = max(1, min((1 << 25) // (H * W), max_tris // max(1, f.shape[0])))
    if not (isinstance(frames_per_chunk, int) and frames_per_chunk >= 1
            and frames_per_chunk * max(1, f.shape[0]) < 2**31):
        raise ValueError(f"frames_per_chunk: expected an integer >= 1 with frames × triangles < 2**31, "
                         f"got {frames_per_chunk!r}")
    if not (isinstance(max_fragments, int) and max_fragments >= 1):
        raise ValueError(f"max_fragments: expected an integer >= 1, got {max_fragments!r}")

    codes = torch.zeros(B, H, W, 3, dtype=torch.uint8, device=device)
    mask = torch.zeros(B, H, W, dtype=torch.bool, device=device) if return_mask else None
    depth = torch.full((B, H, W), math.inf, device=device) if return_depth else None
    Kinv = _inverse_intrinsics(Kt)
    for b0 in range(0, B, frames_per_chunk):
        sl = slice(b0, min(B, b0 + frames_per_chunk))
        cam = torch.einsum("bij,bvj->bvi", Rt[sl], v[sl]) + tt[sl, None, :]
        out = _rasterize(cam, f, c[sl], Kt[sl], Kinv[sl], W, H, near, max_fragments)
        codes[sl] = out[0]
        if mask is not None:
            mask[sl] = out[1]
        if depth is not None:
            depth[sl] = out[2]
    extras = tuple(x for x in (mask, depth) if x is not None)
    return (codes, *extras) if extras else codes


def _triangle_setup(cam: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, Kinv: torch.Tensor,
                    W: int, H: int, near: float):
    """Edge functions, determinants and pixel-centre bounding boxes of every triangle.

    Shapes: cam (B, V, 3) -> E (B, T, 3, 3) [edge i, coefficient of (u+.5, v+.5, 1)], det (B, T),
    x0, x1, y0, nx, ny (B, T) int64 (pixel box, nx·ny = its pixels; 0 for triangles that draw
    nothing), all_front (B, T) bool (no corner nearer than ``near``).
    """
    B, T = cam.shape[0], faces.shape[0]
    P = cam.index_select(1, faces.reshape(-1)).view(B, T, 3, 3)  # (B, T, 3 corners, 3 xyz)
    # P_j × P_k written as P_j × (P_k − P_j), and det = P0 · ((P1 − P0) × (P2 − P0)): the same values,
    # but the small edge vectors avoid float32 cancellation for small triangles far from the camera.
    n = torch.stack([torch.linalg.cross(P[:, :, j], P[:, :, k] - P[:, :, j]) for j, k in _CYCLIC], 2)
    normal = torch.linalg.cross(P[:, :, 1] - P[:, :, 0], P[:, :, 2] - P[:, :, 0])  # (B, T, 3)
    det = (P[:, :, 0] * normal).sum(-1)
    # w_i(p) = (Kinv p) · n_i = p · (Kinvᵀ n_i): edge coefficients over p = (u + .5, v + .5, 1).
    E = torch.einsum("bji,btkj->btki", Kinv, n)
    # Bounding box of the projected corners; for triangles crossing the near plane, of the
    # triangle clipped to z >= near (corners in front plus edge crossings), computed on that subset.
    z = P[..., 2]
    front = z >= near
    all_front = front.all(-1)
    big = float(4 * MAX_SIDE)
    proj = torch.einsum("bij,btpj->btpi", K, P)
    zc = torch.where(all_front[..., None], proj[..., 2], torch.ones_like(proj[..., 2]))
    xy = (proj[..., :2] / zc[..., None]).clamp(-big, big)
    lo, hi = xy.amin(2), xy.amax(2)
    partial = torch.nonzero((front.any(-1) & ~all_front).reshape(-1)).squeeze(1)
    if len(partial):
        bb = partial // T
        lo_p, hi_p = _clipped_bbox(P.reshape(B * T, 3, 3)[partial], K[bb], near, big)
        lo.view(-1, 2)[partial] = lo_p
        hi.view(-1, 2)[partial] = hi_p
    # Pixel u has its centre at u + 0.5: centres inside [lo, hi] are u in [ceil(lo-.5), floor(hi-.5)].
    x0 = torch.ceil(lo[..., 0] - 0.5).clamp(0, W).long()
    x1 = torch.floor(hi[..., 0] - 0.5).clamp(-1, W - 1).long()
    y0 = torch.ceil(lo[..., 1] - 0.5).clamp(0, H).long()
    y1 = torch.floor(hi[..., 1] - 0.5).clamp(-1, H - 1).long()
    nx = (x1 - x0 + 1).clamp(min=0)
    ny = (y1 - y0 + 1).clamp(min=0)
    scale = P.abs().amax((2, 3)).clamp(min=1e-30)
    drawable = front.any(-1) & (normal.norm(dim=-1) > 1e-12 * scale * scale) & (det != 0)
    nx = torch.where(drawable, nx, torch.zeros_like(nx))
    return E, det, x0, x1, y0, nx, ny, all_front


def _clipped_bbox(P: torch.Tensor, K: torch.Tensor, near: float, big: float):
    """Image bounding box of triangles clipped to z >= near. Shapes: P (N, 3, 3), K (N, 3, 3) -> (N, 2) x2."""
    z = P[..., 2]
    pts, ok = [P], [z >= near]
    for j, k in _CYCLIC:
        zj, zk = z[:, j], z[:, k]
        crosses = (zj >= near) != (zk >= near)
        s = ((near - zj) / torch.where(crosses, zk - zj, torch.ones_like(zj))).clamp(0, 1)
        pts.append((P[:, j] + s[:, None] * (P[:, k] - P[:, j]))[:, None])
        ok.append(crosses[:, None])
    pts = torch.cat(pts, 1)  # (N, 6, 3)
    ok = torch.cat(ok, 1)
    proj = torch.einsum("nij,npj->npi", K, pts)
    zc = torch.where(ok, proj[..., 2], torch.ones_like(proj[..., 2]))
    xy = (proj[..., :2] / zc[..., None]).clamp(-big, big)
    lo = torch.where(ok[..., None], xy, torch.full_like(xy, big)).amin(1)
    hi = torch.where(ok[..., None], xy, torch.full_like(xy, -big)).amax(1)
    return lo, hi


def _chunks(sizes: torch.Tensor, budget: int):
    """Split consecutive items with ``sizes`` into runs of total size <= budget (>= 1 item each).

    Yields (start, stop, total) with python ints.
    """
    ends = torch.cumsum(sizes, 0)
    total = int(ends[-1]) if len(ends) else 0
    start = done = 0
    while done < total:
        stop = max(int(torch.searchsorted(ends, done + budget, right=True)), start + 1)
        n = int(ends[stop - 1]) - done
        yield start, stop, n
        done += n
        start = stop


def _rasterize(cam, faces, colors, K, Kinv, W, H, near, max_fragments):
    """Rasterize one group of frames. Shapes: cam (B, V, 3) -> (B,H,W,3) uint8, (B,H,W) bool, depth."""
    B = cam.shape[0]
    T = faces.shape[0]
    device = cam.device
    zbuf = torch.full((B * H * W,), _EMPTY_KEY, dtype=torch.int64, device=device)
    if T:
        E, det, x0, x1, y0, nx, ny, all_front = _triangle_setup(cam, faces, K, Kinv, W, H, near)
        E = E.reshape(B * T, 9)
        # Per triangle: edge coefficients (9), det, x0 + .5, x1 + .5, y0 + .5, all_front.
        col = lambda x: x.reshape(-1, 1).float()  # noqa: E731
        tri = torch.cat([E, col(det), col(x0) + 0.5, col(x1) + 0.5, col(y0) + 0.5, col(all_front)], 1)
        ny = torch.where(nx > 0, ny, torch.zeros_like(ny)).reshape(-1)
        live = torch.nonzero(ny > 0).squeeze(1)  # triangles (flat b*T + t) with candidate rows
        rows = ny[live]
        for start, stop, n_rows in _chunks(rows, max_fragments):
            ids = live[start:stop]
            row_tri, pv, u_lo, span = _row_spans(ids, rows[start:stop], n_rows, tri)
            for r0, r1, n in _chunks(span, max_fragments):
                _fragments(ids, row_tri[r0:r1], pv[r0:r1], u_lo[r0:r1], span[r0:r1], n, tri, T, W, H,
                           near, zbuf)
    covered = zbuf != _EMPTY_KEY
    out = torch.zeros(B * H * W, 3, dtype=torch.uint8, device=device)
    depth = torch.full((B * H * W,), math.inf, device=device)
    if not T:
        return out.view(B, H, W, 3), covered.view(B, H, W), depth.view(B, H, W)
    pix = torch.nonzero(covered).squeeze(1)
    key = zbuf[pix]
    tri = key & 0xFFFFFFFF  # flat b*T + t
    b = pix // (H * W)
    tri_local = tri - b * T
    rem = pix - b * (H * W)
    py = (rem // W).float() + 0.5
    px = (rem % W).float() + 0.5
    Ep = E.index_select(0, tri).view(-1, 3, 3)
    w = Ep[:, :, 0] * px[:, None] + Ep[:, :, 1] * py[:, None] + Ep[:, :, 2]
    bary = w / w.sum(1, keepdim=True)
    vid = faces.index_select(0, tri_local)  # (N, 3)
    V = colors.shape[1]
    cv = colors.reshape(-1, 3).index_select(0, (b[:, None] * V + vid).reshape(-1)).view(-1, 3, 3)
    col = (bary[:, :, None] * cv).sum(1)
    out[pix] = torch.round(col.clamp(0, 1) * 255).to(torch.uint8)
    depth[pix] = (key >> 32).to(torch.int32).view(torch.float32)
    return out.view(B, H, W, 3), covered.view(B, H, W), depth.view(B, H, W)


def _row_spans(ids, rows, n_rows, tri, eps: float = 0.01, min_width: int = 4):
    """Candidate pixel span of every (triangle, row) pair.

    For a triangle wholly in front of the near plane, ``Σw`` has the sign of ``det`` over its image,
    so "inside" is three half-planes ``sign(det)·w_i >= 0``: on the row through pixel centres
    ``v + 0.5`` each bounds ``u`` on one side. The bounds are widened by ``eps`` pixels plus their
    float32 rounding bound, so every pixel the fragment test could accept is kept; that test still
    decides. Triangles crossing the near plane, and boxes narrower than ``min_width`` pixels, keep
    their whole bounding-box rows.

    Shapes: ids (k,) -> row_tri (n_rows,) int32 index into ids, pv (n_rows,) float32 row centre,
    u_lo (n_rows,) int32 first pixel, span (n_rows,) int64 pixel count (may be 0).
    """
    device = ids.device
    k = torch.arange(len(ids), device=device, dtype=torch.int32)
    row_tri = torch.repeat_interleave(k, rows, output_size=n_rows)
    first = (torch.cumsum(rows, 0) - rows).to(torch.int32)
    r = torch.arange(n_rows, device=device, dtype=torch.int32) - first[row_tri]
    dk = tri.index_select(0, ids)  # (k, 14)
    box = dk[:, 10:].index_select(0, row_tri)  # x0 + .5, x1 + .5, y0 + .5, all_front
    pv = box[:, 2] + r.float()
    lo, hi = box[:, 0], box[:, 1]  # centres of the box's first and last pixel
    # Narrow only rows of boxes at least `min_width` pixels wide: for smaller ones the bounds cost
    # more than the fragments they would save.
    narrow = torch.nonzero((box[:, 3] > 0) & (hi - lo >= min_width - 1)).squeeze(1)
    if len(narrow):
        d = dk.index_select(0, row_tri.index_select(0, narrow))
        pvn = pv.index_select(0, narrow)
        sign = torch.sign(d[:, 9])
        lo_n, hi_n = d[:, 10], d[:, 11]
        empty = torch.zeros_like(lo_n, dtype=torch.bool)
        for i in range(3):
            a = d[:, 3 * i] * sign
            cb, cc = d[:, 3 * i + 1] * pvn, d[:, 3 * i + 2]
            c = (cb + cc) * sign
            size = cb.abs() + cc.abs()  # float32 rounding of c is below 2**-24 of this
            safe_a = torch.where(a == 0, torch.ones_like(a), a)
            cross = -c / safe_a  # pu where the edge crosses the row
            slack = eps + 1e-6 * size / safe_a.abs()
            lo_n = torch.where(a > 0, torch.maximum(lo_n, cross - slack), lo_n)
            hi_n = torch.where(a < 0, torch.minimum(hi_n, cross + slack), hi_n)
            empty |= (a == 0) & (c < -1e-6 * size)
        hi_n = torch.where(empty, lo_n - 1, hi_n)
        lo = lo.index_put((narrow,), lo_n)
        hi = hi.index_put((narrow,), hi_n)
    u_lo = torch.ceil(lo - 0.5).to(torch.int32)
    span = (torch.floor(hi - 0.5).to(torch.int32) - u_lo + 1).clamp(min=0).long()
    return row_tri, pv, u_lo, span


def _fragments(ids, row_tri, pv, u_lo, span, n, tri, T, W, H, near, zbuf):
    """Evaluate the ``n`` fragments of some rows and fold them into ``zbuf`` (in place)."""
    device = ids.device
    k = torch.arange(len(span), device=device, dtype=torch.int32)
    frag_row = torch.repeat_interleave(k, span, output_size=n)  # (n,) index into the rows
    first = (torch.cumsum(span, 0) - span).to(torch.int32)
    local = torch.arange(n, device=device, dtype=torch.int32) - first[frag_row]
    ftri = row_tri.index_select(0, frag_row)  # index into ids
    d = tri.index_select(0, ids).index_select(0, ftri)  # (n, 14)
    pu = (u_lo.index_select(0, frag_row) + local).float() + 0.5
    pv = pv.index_select(0, frag_row)
    w0 = d[:, 0] * pu + d[:, 1] * pv + d[:, 2]
    w1 = d[:, 3] * pu + d[:, 4] * pv + d[:, 5]
    w2 = d[:, 6] * pu + d[:, 7] * pv + d[:, 8]
    s = w0 + w1 + w2
    z = d[:, 9] / s
    # Inside: every b_i = w_i / s >= 0, i.e. w_i·s >= 0; in front of the near plane (s = 0 gives
    # z = ±inf or NaN, rejected by the finiteness test).
    hit = (w0 * s >= 0) & (w1 * s >= 0) & (w2 * s >= 0) & (z >= near) & torch.isfinite(z)
    sel = torch.nonzero(hit).squeeze(1)
    tid = ids[ftri[sel]]  # flat b*T + t, int64
    u = pu[sel].long()  # pu = u + 0.5 exactly (small integers in float32)
    v = pv[sel].long()
    pix = ((tid // T) * H + v) * W + u
    key = (z[sel].view(torch.int32).to(torch.int64) << 32) | tid
    zbuf.scatter_reduce_(0, pix, key, reduce="amin")
