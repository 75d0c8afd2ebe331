"""Structured motion codes (DESIGN §6, spec §9): per-vertex colour code tables and a batched
rasterizer that turns posed bodies and cameras into the code images MIMO's pose guider reads."""
from mimo.codes.raster import DEFAULT_NEAR, concat_meshes, render_codes

__all__ = ["DEFAULT_NEAR", "concat_meshes", "render_codes"]
