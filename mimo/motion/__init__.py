"""Motion data: clips of SMPL-style body parameters, camera tracks, file readers, retargeting.

numpy only (no torch): ``rotations.py`` and ``retarget.py`` are also vendored by the Blender add-on.
"""
from .bvh import BVH, parse_bvh, read_bvh, write_bvh
from .clip import BodyTrack, CameraTrack, MotionClip, load_npz, save_npz
from .readers import read_amass, read_bvh_clip, read_smpl_params, rotate_world
from .retarget import PRESETS, SourceSkeleton, detect_bone_map, resolve_bone_map, retarget

__all__ = [
    "BVH", "BodyTrack", "CameraTrack", "MotionClip", "PRESETS", "SourceSkeleton",
    "detect_bone_map", "load_npz", "parse_bvh", "read_amass", "read_bvh", "read_bvh_clip",
    "read_smpl_params", "resolve_bone_map", "retarget", "rotate_world", "save_npz", "write_bvh",
]
