"""Export Passes: the shot's ground truth for other pose-driven video models, from the 3D scene
rather than estimated from a video.

Written into a new folder (never over existing files):

* ``shot.npz`` — what Generate would send: per body ``body<i>_global_orient`` (F, 3),
  ``body<i>_body_pose`` (F, 21|23, 3), ``body<i>_left/right_hand_pose`` (F, 15, 3) when the body
  has hands, ``body<i>_transl`` (F, 3), ``body<i>_betas`` (F, K) (the same every frame; as
  ``mimo export`` writes them), in the wire's SMPL axes (Y up);
  ``body_model``; OpenCV cameras ``K`` (F, 3, 3), ``R`` (F, 3, 3), ``t`` (F, 3) with
  ``x_cam = R x_world + t``; ``width``, ``height``, ``fps`` and the scene ``frames`` (F,).
* ``mask/frame_00000.png`` ... — the body mask: white where a body is seen (in front of
  everything else), black elsewhere; at the output size, aligned with the cameras.
* ``keypoints/frame_00000.json`` ... — the bodies' joints as 2D keypoints in the OpenPose JSON
  layout (BODY_25 and hands; see vendor/keypoints.py for what a body model has no joint for), from
  the joints Blender shows (the evaluated bone heads).
* ``depth.npy`` (F, H, W) float32 — distance along the camera's viewing axis (OpenCV ``z``, metres)
  of what each pixel's centre sees, 0 where nothing is; ``normal.npy`` (F, H, W, 3) float32 — its
  unit surface normal in OpenCV camera axes (x right, y down, z forward), 0 where nothing is.
  One ray per pixel through the viewport's evaluated scene (what is hidden in the viewport is
  not hit): exact, but a Python loop — about a second per 100k pixels.
* ``depth/frame_00000.png`` (16-bit, millimetres) and ``normal/frame_00000.png`` (8-bit RGB
  normal map) ... — the same as images, written by the vendored ``mimo.codes.pass_images`` that
  ``mimo export`` uses too (its docstring has the encoding).

No face keypoints (``face_keypoints_2d`` is empty): the rigs carry no facial landmarks; they
come only from an SMPL-X model file's landmark tables, which ``mimo export --body smplx`` reads
(vendor/keypoints.py).
"""
from __future__ import annotations

import json
import os

import bpy
import numpy as np

from ..core import axes
from ..core.frames import frame_path
from ..core.png import write_png
from ..vendor.keypoints import openpose_frame
from ..vendor.pass_images import write_pass_images


def _joints(scene: bpy.types.Scene, rigs: list, frames: list[int]) -> list[list[dict]]:
    """Per frame, per rig: {joint name: evaluated bone head (3,) in wire world axes}."""
    from . import rig_builder

    keep, out = scene.frame_current, []
    try:
        for frame in frames:
            scene.frame_set(frame)
            people = []
            for rig in rigs:
                names = rig_builder.rig_data(rig["mimo_rig_data"]).joint_names
                M = rig.matrix_world
                heads = np.array([list(M @ rig.pose.bones[n].head) for n in names])
                people.append(dict(zip(names, axes.points_blender_to_wire(heads))))
            out.append(people)
    finally:
        scene.frame_set(keep)
    return out


def _depth_normal(scene: bpy.types.Scene, frames: list[int], track: dict) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast every pixel centre of the camera track. Shapes: -> (F, H, W), (F, H, W, 3)"""
    from mathutils import Vector

    W, H = int(track["width"]), int(track["height"])
    depth = np.zeros((len(frames), H, W), np.float32)
    normal = np.zeros((len(frames), H, W, 3), np.float32)
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)  # (H, W, 3)
    keep = scene.frame_current
    try:
        for f, frame in enumerate(frames):
            scene.frame_set(frame)
            dg = bpy.context.evaluated_depsgraph_get()
            K, R, t = (np.asarray(track[k][f], np.float64) for k in ("K", "R", "t"))
            rays = axes.points_wire_to_blender(pix @ np.linalg.inv(K).T @ R)  # camera -> wire -> Blender
            rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
            origin = Vector(axes.points_wire_to_blender(-R.T @ t).tolist())
            hits = np.zeros(H * W, bool)
            loc = np.zeros((H * W, 3))
            nrm = np.zeros((H * W, 3))
            for i, ray in enumerate(rays.reshape(-1, 3).tolist()):
                hit, p, n, *_ = scene.ray_cast(dg, origin, Vector(ray))
                if hit:
                    hits[i], loc[i], nrm[i] = True, p, n
            cam_pts = axes.points_blender_to_wire(loc) @ R.T + t
            cam_nrm = axes.points_blender_to_wire(nrm) @ R.T
            depth[f] = np.where(hits, cam_pts[:, 2], 0.0).reshape(H, W)
            normal[f] = np.where(hits[:, None], cam_nrm, 0.0).reshape(H, W, 3)
    finally:
        scene.frame_set(keep)
    return depth, normal


def export_passes(scene: bpy.types.Scene, folder: str, warnings: list[str] | None = None) -> dict:
    """Write the passes of ``scene`` into ``folder`` (which must exist and be empty); returns
    ``{"frames": F, "bodies": N, "width": W, "height": H}``."""
    from .layers import render_layers
    from .operators import collect_shot

    shot = collect_shot(scene, warnings)
    track = shot["track"]
    arrays = {"body_model": np.array(shot["body_model"]), "fps": np.array(shot["fps"]),
              "frames": np.array(shot["frames"]), "K": track["K"], "R": track["R"], "t": track["t"],
              "width": np.array(track["width"]), "height": np.array(track["height"])}
    F = len(shot["frames"])
    for i, body in enumerate(shot["bodies"]):
        arrays.update({f"body{i}_{k}": np.asarray(v, np.float32) for k, v in body.items() if k != "betas"})
        betas = np.asarray(body["betas"], np.float32)
        if betas.size:  # per frame, as mimo export writes a clip's (which may vary)
            arrays[f"body{i}_betas"] = np.ascontiguousarray(np.broadcast_to(betas, (F, betas.size)))
    masks: list = []
    render_layers(scene, shot["rigs"], shot["frames"], track["width"], track["height"], crop=not shot["sized"],
                  plate=False, occlusion=False, visible=masks)
    os.makedirs(os.path.join(folder, "mask"))
    for i, m in enumerate(masks):
        write_png(frame_path(os.path.join(folder, "mask"), i), np.repeat(m[..., None], 3, axis=2))
    os.makedirs(os.path.join(folder, "keypoints"))
    for i, people in enumerate(_joints(scene, shot["rigs"], shot["frames"])):
        frame = openpose_frame(people, track["K"][i], track["R"][i], track["t"][i], track["width"], track["height"])
        with open(os.path.join(folder, "keypoints", f"frame_{i:05d}.json"), "x") as f:
            json.dump(frame, f)
    with open(os.path.join(folder, "shot.npz"), "xb") as f:
        np.savez(f, **arrays)
    depth, normal = _depth_normal(scene, shot["frames"], track)
    for name, a in (("depth.npy", depth), ("normal.npy", normal)):
        with open(os.path.join(folder, name), "xb") as f:
            np.save(f, a)
    write_pass_images(folder, depth, normal)
    return {"frames": len(masks), "bodies": len(shot["bodies"]), "width": track["width"], "height": track["height"]}
