"""An independent reference: the same code images drawn by a real OpenGL implementation.

Mesa's off-screen OpenGL (OSMesa, Debian ``libosmesa6``) through PyOpenGL, set up the way the
official release's pyrender renderer was (docs/MIMO.md §9.8): camera at the origin looking down −Z with the
OpenCV→OpenGL flip (y and z negated), the projection matrix of pyrender's ``IntrinsicsCamera``
(znear 0.05), smooth vertex colours with no lighting (pyrender's FLAT mode outputs the interpolated
vertex colour), black background, depth test ``GL_LESS``, culling off, RGBA8 read back and flipped
to top-row-first. It is used by the fidelity tests and the benchmark only; the library never needs
it. PyOpenGL is a dev dependency; ``PYOPENGL_PLATFORM`` must be ``osmesa`` before OpenGL is first
imported, which :func:`available` arranges when nothing imported OpenGL yet.
"""
from __future__ import annotations

import os

import numpy as np

ZNEAR = 0.05


def available() -> bool:
    """True when PyOpenGL and an OSMesa library can be loaded here."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    if os.environ["PYOPENGL_PLATFORM"] != "osmesa":
        return False
    try:
        from OpenGL import (
            GL,  # noqa: F401
            osmesa,  # noqa: F401
        )
    except Exception:  # ImportError, or OpenGL's own errors when libOSMesa is missing
        return False
    return True


def projection_matrix(K: np.ndarray, width: int, height: int, znear: float = ZNEAR) -> np.ndarray:
    """pyrender ``IntrinsicsCamera.get_projection_matrix`` with an infinite far plane.

    Shapes: K (3, 3) -> (4, 4) float64, row-major, acting on OpenGL camera coordinates.
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    P = np.zeros((4, 4))
    P[0, 0] = 2.0 * fx / width
    P[0, 1] = -2.0 * K[0, 1] / width
    P[1, 1] = 2.0 * fy / height
    P[0, 2] = 1.0 - 2.0 * cx / width
    P[1, 2] = 2.0 * cy / height - 1.0
    P[3, 2] = -1.0
    P[2, 2] = -1.0
    P[2, 3] = -2.0 * znear
    return P


class OSMesaRenderer:
    """Off-screen OpenGL renderer of vertex-coloured meshes (one context of a fixed size)."""

    def __init__(self, width: int, height: int):
        if not available():
            raise RuntimeError("OSMesa OpenGL is not available (need PyOpenGL and libosmesa6, "
                               "with PYOPENGL_PLATFORM=osmesa before OpenGL is imported)")
        from OpenGL import GL, arrays, osmesa

        self.width, self.height = int(width), int(height)
        self._GL = GL
        self._ctx = osmesa.OSMesaCreateContextExt(osmesa.OSMESA_RGBA, 24, 0, 0, None)
        if not self._ctx:
            raise RuntimeError("OSMesaCreateContextExt failed")
        self._buf = arrays.GLubyteArray.zeros((self.height, self.width, 4))
        if not osmesa.OSMesaMakeCurrent(self._ctx, self._buf, GL.GL_UNSIGNED_BYTE, self.width, self.height):
            raise RuntimeError("OSMesaMakeCurrent failed")
        self._osmesa = osmesa

    def close(self) -> None:
        if self._ctx is not None:
            self._osmesa.OSMesaDestroyContext(self._ctx)
            self._ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def render(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray,
               K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Draw one frame; returns the RGB image, top row first.

        Colours are handed to OpenGL as RGBA8 (as trimesh/pyrender did: round(colour × 255)).

        Shapes: vertices (V, 3) world, faces (T, 3), colors (V, 3) in [0, 1], K/R (3, 3), t (3,)
        -> (H, W, 3) uint8
        """
        GL = self._GL
        self._osmesa.OSMesaMakeCurrent(self._ctx, self._buf, GL.GL_UNSIGNED_BYTE, self.width, self.height)
        cam = vertices.astype(np.float64) @ R.T + t
        gl_cam = (cam * np.array([1.0, -1.0, -1.0])).astype(np.float32)
        rgba = np.concatenate([np.round(np.clip(colors, 0, 1) * 255), np.full((len(colors), 1), 255)], 1)
        rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
        GL.glViewport(0, 0, self.width, self.height)
        GL.glClearColor(0.0, 0.0, 0.0, 0.0)
        GL.glClearDepth(1.0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)
        GL.glDisable(GL.GL_CULL_FACE)
        GL.glDisable(GL.GL_LIGHTING)
        GL.glDisable(GL.GL_DITHER)
        GL.glShadeModel(GL.GL_SMOOTH)
        GL.glHint(GL.GL_PERSPECTIVE_CORRECTION_HINT, GL.GL_NICEST)
        GL.glMatrixMode(GL.GL_PROJECTION)
        GL.glLoadMatrixd(projection_matrix(K, self.width, self.height).T.copy())  # column-major
        GL.glMatrixMode(GL.GL_MODELVIEW)
        GL.glLoadIdentity()
        GL.glEnableClientState(GL.GL_VERTEX_ARRAY)
        GL.glEnableClientState(GL.GL_COLOR_ARRAY)
        GL.glVertexPointer(3, GL.GL_FLOAT, 0, np.ascontiguousarray(gl_cam))
        GL.glColorPointer(4, GL.GL_UNSIGNED_BYTE, 0, rgba)
        idx = np.ascontiguousarray(faces, dtype=np.uint32)
        GL.glDrawElements(GL.GL_TRIANGLES, idx.size, GL.GL_UNSIGNED_INT, idx)
        GL.glFinish()
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        data = GL.glReadPixels(0, 0, self.width, self.height, GL.GL_RGB, GL.GL_UNSIGNED_BYTE)
        img = np.frombuffer(data, dtype=np.uint8).reshape(self.height, self.width, 3)
        return img[::-1].copy()

