"""Observations of a rendered clip (``mimo dataset synth`` clip folder with its ``motion.npz``)
from its ground truth instead of models: the true keypoints (COCO-17 on the body, projected by
the clip's camera), the true person mask (the body's pixels not under an occluder) and a depth
map (the body's rendered depth; synth occluders at half the body's depth, in front of it as
synth draws them; the background 2 m behind the body). It exercises every other part of the
decomposition (fit, scene, occlusion, outputs) with a known answer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TruthObserver:
    """``observe`` for :func:`mimo.decompose.pipeline.decompose` from a synth clip folder."""

    depth_kind = "metric"

    def __init__(self, clip_dir: str | Path, body=None):
        from mimo.body import load_body
        from mimo.codes import render_codes
        from mimo.data.layout import read_clip
        from mimo.decompose.skeleton import body_keypoints, keypoint_sources
        from mimo.motion import load_npz

        self.clip = read_clip(clip_dir)
        motion, self.camera = load_npz(Path(clip_dir) / "motion.npz")
        self.motion = motion
        body = body or load_body("open")
        params = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in motion.bodies[0].params().items()}
        with torch.no_grad():
            out = body(**params)
        cam = self.camera
        joint_ids, face_ids = keypoint_sources(body)
        kp3 = body_keypoints(out.joints, out.vertices[:, torch.as_tensor(face_ids[:5])], joint_ids)
        uv, _ = cam.project(kp3.double().numpy())
        self.keypoints = np.concatenate([uv, np.ones(uv.shape[:2] + (1,))], -1)
        self.joints_cam = np.einsum("fij,fnj->fni", cam.R, out.joints[:, :22].double().numpy()) + cam.t[:, None]
        _, mask, depth = render_codes(out.vertices, body.faces, torch.zeros(body.num_vertices, 3), cam.K, cam.R,
                                      cam.t, cam.width, cam.height, return_mask=True, return_depth=True)
        self.body_mask, self.body_depth = mask.numpy(), depth.numpy()
        occluded = np.asarray(self.clip.occlusion) >= 128 if self.clip.occlusion is not None else 0
        self.person = self.body_mask & ~occluded
        far = float(np.nanmax(np.where(self.body_mask, self.body_depth, np.nan))) + 2.0
        near = float(np.nanmin(np.where(self.body_mask, self.body_depth, np.nan))) / 2
        self.depth = np.where(self.body_mask, self.body_depth, far).astype(np.float32)
        if self.clip.occlusion is not None:
            self.depth = np.where(occluded, near, self.depth).astype(np.float32)
        self.boxes = np.zeros((len(self.keypoints), 5))
        for f, m in enumerate(self.person):
            ys, xs = np.nonzero(m)
            if len(xs):
                self.boxes[f] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 1.0]

    def observe(self, start: int, frames, boxes, timings: dict):
        sl = slice(start, start + len(frames))
        return self.person[sl], self.keypoints[sl], self.depth[sl]
