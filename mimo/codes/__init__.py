"""Structured motion codes (DESIGN §6, spec §9): per-vertex colour code tables and a batched
rasterizer that turns posed bodies and cameras into the code images MIMO's pose guider reads."""
from mimo.codes.camera import FRONT_VIEW, auto_camera, official_camera, official_intrinsics
from mimo.codes.raster import DEFAULT_NEAR, concat_meshes, render_codes
from mimo.codes.tables import default_code_table, load_sdc_table, quantize, remove_faces, remove_hands

__all__ = [
    "DEFAULT_NEAR", "FRONT_VIEW", "auto_camera", "concat_meshes", "default_code_table",
    "load_sdc_table", "official_camera", "official_intrinsics", "quantize", "remove_faces",
    "remove_hands", "render_codes",
]
