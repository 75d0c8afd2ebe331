"""Body models: the open default body and the SMPL family, driven by our own batched LBS.

``load_body("open")`` needs neither anny nor smplx; SMPL-family files are read by our own code.
The kinds a front end may offer are registered once in :mod:`mimo.body.kinds` (``BODY_KINDS``;
``installed_kinds()`` lists those that can load here).
"""
from mimo.body.joints import SMPL_JOINT_NAMES, SMPLH_JOINT_NAMES, SMPLX_JOINT_NAMES
from mimo.body.kinds import BODY_KINDS, BodyKind, installed_kinds
from mimo.body.loading import default_models_dir, load_body, load_open_body, load_smpl_family
from mimo.body.model import BodyModel, BodyOutput, axis_angle_to_matrix
from mimo.body.rig_export import export_rig_data

__all__ = [
    "BODY_KINDS", "BodyKind", "BodyModel", "BodyOutput", "installed_kinds", "axis_angle_to_matrix", "default_models_dir", "export_rig_data",
    "load_body", "load_open_body", "load_smpl_family", "SMPL_JOINT_NAMES", "SMPLH_JOINT_NAMES",
    "SMPLX_JOINT_NAMES",
]
