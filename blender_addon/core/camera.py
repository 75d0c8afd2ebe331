"""Blender camera -> OpenCV pinhole ``K``, world-to-camera ``R|t`` on the wire.

Pixel convention: pixel (u, v) covers [u, u+1) x [v, v+1) with its centre at (u + 0.5, v + 0.5),
origin at the top-left corner of the image — the OpenGL/pyrender convention of the official
renderer, and where Blender's own pixel centres sit. So ``K`` maps a camera-space point to
continuous image coordinates with no half-pixel offset: ``(u, v) = (fx x/z + cx, fy y/z + cy)``.

The intrinsics follow Blender's view-plane rule (``BKE_camera_params_compute_viewplane``):
the render size is ``resolution * percentage // 100``; the sensor fit picks the axis the sensor
size spans (AUTO: the wider one by pixel aspect, always with ``sensor_width``); ``shift_x/y`` are
fractions of that fitted axis; non-square pixels scale y by ``pixel_aspect_y / pixel_aspect_x``.

Shapes:
    matrix_world  (4, 4) or (F, 4, 4)   camera object to Blender world (scale is ignored)
    K             (3, 3) or (F, 3, 3)
    R             (3, 3) or (F, 3, 3)   wire world -> OpenCV camera (x right, y down, z forward)
    t             (3,)   or (F, 3)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .axes import WIRE_TO_BLENDER

#: Blender camera axes (x right, y up, looking down -z) -> OpenCV camera axes.
_BLENDER_CAM_TO_CV = np.diag([1.0, -1.0, -1.0])


@dataclasses.dataclass
class BlenderLens:
    """What of ``bpy.types.Camera`` and ``RenderSettings`` decides the projection."""

    lens: float = 50.0                 # focal length, mm
    sensor_width: float = 36.0         # mm
    sensor_height: float = 24.0        # mm
    sensor_fit: str = "AUTO"           # "AUTO" | "HORIZONTAL" | "VERTICAL"
    shift_x: float = 0.0
    shift_y: float = 0.0
    resolution_x: int = 1920
    resolution_y: int = 1080
    resolution_percentage: int = 100
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0
    type: str = "PERSP"

    def render_size(self) -> tuple[int, int]:
        """(width, height) in pixels of the rendered image, as Blender computes it."""
        w = self.resolution_x * self.resolution_percentage // 100
        h = self.resolution_y * self.resolution_percentage // 100
        return int(w), int(h)

    def validate(self) -> None:
        if self.type != "PERSP":
            raise ValueError(f"camera type: expected 'PERSP' (a pinhole camera), got {self.type!r}")
        for name in ("lens", "sensor_width", "sensor_height", "pixel_aspect_x", "pixel_aspect_y"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name}: expected a positive number, got {v!r}")
        if self.sensor_fit not in ("AUTO", "HORIZONTAL", "VERTICAL"):
            raise ValueError(f"sensor_fit: expected AUTO, HORIZONTAL or VERTICAL, got {self.sensor_fit!r}")
        w, h = self.render_size()
        if w < 1 or h < 1:
            raise ValueError(f"resolution: expected at least 1x1 pixels after percentage, got {w}x{h}")


def intrinsics(lens: BlenderLens, width: int | None = None, height: int | None = None) -> np.ndarray:
    """``K`` (3, 3) in pixels of the render size, or of ``width`` x ``height`` if given (the
    image is then rescaled from the render size, which keeps the field of view).

    Shapes: -> K (3, 3)
    """
    lens.validate()
    win_x, win_y = lens.render_size()
    ycor = lens.pixel_aspect_y / lens.pixel_aspect_x
    fit = lens.sensor_fit
    if fit == "AUTO":
        sensor = lens.sensor_width
        fit = "HORIZONTAL" if lens.pixel_aspect_x * win_x >= lens.pixel_aspect_y * win_y else "VERTICAL"
    else:
        sensor = lens.sensor_width if fit == "HORIZONTAL" else lens.sensor_height
    viewfac = win_x if fit == "HORIZONTAL" else ycor * win_y
    f = lens.lens / sensor * viewfac
    K = np.array([
        [f, 0.0, 0.5 * win_x - lens.shift_x * viewfac],
        [0.0, f / ycor, 0.5 * win_y + lens.shift_y * viewfac / ycor],
        [0.0, 0.0, 1.0],
    ])
    if width is not None or height is not None:
        if width is None or height is None or width < 1 or height < 1:
            raise ValueError(f"width, height: expected two positive sizes, got {width}, {height}")
        K = np.diag([width / win_x, height / win_y, 1.0]) @ K
    return K


def crop_to_multiple(K: np.ndarray, width: int, height: int, multiple: int = 8
                     ) -> tuple[np.ndarray, int, int]:
    """Centre-crop a ``width`` x ``height`` image to sides that are multiples of ``multiple`` (the
    server wants multiples of 8): no rescale, so the principal point moves by half the cut.

    Shapes: K (..., 3, 3) -> K (..., 3, 3), new width, new height
    """
    w2, h2 = width - width % multiple, height - height % multiple
    if w2 < multiple or h2 < multiple:
        raise ValueError(f"resolution: expected at least {multiple}x{multiple} pixels, got {width}x{height}")
    K2 = np.array(K, dtype=np.float64)
    K2[..., 0, 2] -= 0.5 * (width - w2)
    K2[..., 1, 2] -= 0.5 * (height - h2)
    return K2, w2, h2


def aspect_crop(width: int, height: int, out_width: int, out_height: int
                ) -> tuple[float, float, float, float]:
    """The centred rectangle ``(x0, y0, w, h)`` of a ``width`` x ``height`` render that has the
    aspect of ``out_width`` x ``out_height``: the largest one, cut from the sides (a wider render)
    or from top and bottom (a taller one). Scaling it to the output scales x and y alike, so
    nothing is squeezed. Corners may be fractional."""
    if min(width, height, out_width, out_height) < 1:
        raise ValueError(f"size: expected positive sizes, got {width}x{height} -> {out_width}x{out_height}")
    if width * out_height >= height * out_width:  # the render is wider: cut the sides
        cw, ch = height * out_width / out_height, float(height)
    else:
        cw, ch = float(width), width * out_height / out_width
    return 0.5 * (width - cw), 0.5 * (height - ch), cw, ch


def crop_and_scale(K: np.ndarray, width: int, height: int, out_width: int, out_height: int) -> np.ndarray:
    """``K`` of a ``width`` x ``height`` render after :func:`aspect_crop` to the output's aspect and
    a uniform scale to ``out_width`` x ``out_height``.

    Shapes: K (..., 3, 3) -> K (..., 3, 3)
    """
    x0, y0, cw, _ = aspect_crop(width, height, out_width, out_height)
    s = out_width / cw
    K2 = np.array(K, dtype=np.float64)
    K2[..., 0, 2] -= x0
    K2[..., 1, 2] -= y0
    K2[..., :2, :] *= s
    return K2


def output_size(width: int, height: int, out_width: int, out_height: int, multiple: int = 8
                ) -> tuple[int, int]:
    """The size sent for the Width/Height settings: both 0 = the render size cropped to multiples
    of ``multiple``; one of them 0 = that side follows the render's aspect (rounded to a multiple)."""
    if out_width and out_height:
        return int(out_width), int(out_height)
    if not out_width and not out_height:
        return width - width % multiple, height - height % multiple
    nearest = lambda x: max(multiple, int(x / multiple + 0.5) * multiple)  # noqa: E731 (halves up)
    if out_width:
        return int(out_width), nearest(out_width * height / width)
    return nearest(out_height * width / height), int(out_height)


def describe_output(width: int, height: int, out_width: int, out_height: int) -> str:
    """One line for the panel: what of the render becomes the output."""
    w, h = output_size(width, height, out_width, out_height)
    if not out_width and not out_height:
        cut = "" if (w, h) == (width, height) else f" (cut to multiples of 8 from {width}x{height})"
        return f"Output {w}x{h}: the render size{cut}"
    x0, y0, cw, ch = aspect_crop(width, height, w, h)
    if x0 < 0.5 and y0 < 0.5:
        return f"Output {w}x{h}: the {width}x{height} render, scaled"
    side = "sides" if x0 >= 0.5 else "top and bottom"
    return f"Output {w}x{h}: the {width}x{height} render cropped to {cw:.0f}x{ch:.0f} ({side} cut), scaled"


def extrinsics(matrix_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``R, t`` on the wire from the camera object's ``matrix_world``.

    ``x_cv = R @ x_wire + t``. Scale in ``matrix_world`` is removed (Blender ignores it for the
    projection too). Shapes: matrix_world (..., 4, 4) -> R (..., 3, 3), t (..., 3)
    """
    m = np.asarray(matrix_world, dtype=np.float64)
    if m.shape[-2:] != (4, 4):
        raise ValueError(f"matrix_world: expected shape (..., 4, 4), got {m.shape}")
    rot = m[..., :3, :3]
    norms = np.linalg.norm(rot, axis=-2, keepdims=True)
    if np.any(norms < 1e-12):
        raise ValueError("matrix_world: camera has a zero scale")
    rc = rot / norms
    tc = m[..., :3, 3]
    rc_t = np.swapaxes(rc, -1, -2)
    R = _BLENDER_CAM_TO_CV @ rc_t @ WIRE_TO_BLENDER
    t = -np.einsum("ij,...jk,...k->...i", _BLENDER_CAM_TO_CV, rc_t, tc)
    return R, t


def project(K: np.ndarray, R: np.ndarray, t: np.ndarray, points_wire: np.ndarray) -> np.ndarray:
    """Continuous pixel coordinates (u, v) of wire-world points (centre of pixel (0,0) = (0.5, 0.5)).

    Shapes: K (3, 3), R (3, 3), t (3,), points_wire (N, 3) -> (N, 2)
    """
    p = np.asarray(points_wire, dtype=np.float64) @ np.asarray(R).T + np.asarray(t)
    uvw = p @ np.asarray(K).T
    return uvw[:, :2] / uvw[:, 2:3]


def matrix_world_of(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The camera object's ``matrix_world`` (no scale) for wire extrinsics: the exact inverse of
    :func:`extrinsics`, ``extrinsics(matrix_world_of(R, t)) == (R, t)``.

    Shapes: R (..., 3, 3), t (..., 3) -> (..., 4, 4)
    """
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if R.shape[-2:] != (3, 3) or t.shape[-1:] != (3,) or R.shape[:-2] != t.shape[:-1]:
        raise ValueError(f"R, t: expected shapes (..., 3, 3) and (..., 3), got {R.shape} and {t.shape}")
    rc = WIRE_TO_BLENDER @ np.swapaxes(R, -1, -2) @ _BLENDER_CAM_TO_CV  # camera axes in the Blender world
    m = np.zeros(R.shape[:-2] + (4, 4))
    m[..., :3, :3] = rc
    m[..., :3, 3] = -np.einsum("...ij,jk,...k->...i", rc, _BLENDER_CAM_TO_CV, t)
    m[..., 3, 3] = 1.0
    return m


def lens_of_intrinsics(K: np.ndarray, width: int, height: int, sensor_width: float = 36.0) -> BlenderLens:
    """Blender camera and render settings whose :func:`intrinsics` are ``K`` for a ``width`` x
    ``height`` image: the inverse of :func:`intrinsics` (horizontal sensor fit, 100 %, the
    principal point's offset from the centre as shift, ``fx != fy`` as a pixel aspect).

    Shapes: K (3, 3) -> BlenderLens
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K: expected shape (3, 3), got {K.shape}")
    if width < 1 or height < 1:
        raise ValueError(f"width, height: expected positive sizes, got {width}x{height}")
    fx, fy = K[0, 0], K[1, 1]
    if not (fx > 0 and fy > 0) or abs(K[0, 1]) > 1e-9 * fx or np.abs(K[2] - [0, 0, 1]).max() > 1e-12:
        raise ValueError(f"K: expected a pinhole matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, "
                         f"got {K.tolist()}")
    ycor = fx / fy  # pixel_aspect_y / pixel_aspect_x; Blender wants both >= 1
    ax, ay = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    lens = BlenderLens(lens=fx * sensor_width / width, sensor_width=sensor_width,
                       sensor_height=sensor_width * height / width, sensor_fit="HORIZONTAL",
                       shift_x=(0.5 * width - K[0, 2]) / width, shift_y=(K[1, 2] - 0.5 * height) * ycor / width,
                       resolution_x=int(width), resolution_y=int(height), resolution_percentage=100,
                       pixel_aspect_x=ax, pixel_aspect_y=ay)
    lens.validate()
    return lens
