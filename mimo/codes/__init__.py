"""Structured motion codes (docs/MIMO.md §9): per-vertex colour code tables and a batched
rasterizer that turns posed bodies and cameras into the code images MIMO's pose guider reads.

Entry points: :func:`render_codes` (meshes + cameras -> code images), :func:`render_clip`
(MotionClip + CameraTrack + body -> code frames and masks), :func:`auto_camera_track`, the code
tables (:func:`default_code_table`, :func:`load_sdc_table`, :func:`remove_hands`) and the official
camera (:func:`official_camera`).
"""
from mimo.codes.camera import FRONT_VIEW, auto_camera, official_camera, official_intrinsics
from mimo.codes.raster import DEFAULT_NEAR, concat_meshes, render_codes
from mimo.codes.render import auto_camera_track, render_clip
from mimo.codes.tables import default_code_table, load_sdc_table, quantize, remove_faces, remove_hands

__all__ = [
    "DEFAULT_NEAR", "FRONT_VIEW", "auto_camera", "auto_camera_track", "concat_meshes",
    "default_code_table", "load_sdc_table", "official_camera", "official_intrinsics", "quantize",
    "remove_faces", "remove_hands", "render_clip", "render_codes",
]
