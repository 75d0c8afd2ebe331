"""The whole decomposition: a synthetic clip (rendered by our own rasterizer, `mimo dataset
synth`) with its true keypoints, mask and depth; and a video through the four tiny random
models via the CLI. Outputs must read back with the readers of the rest of mimo."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mimo.cli import main
from mimo.data.layout import read_clip
from mimo.data.synth import synth_dataset
from mimo.decompose.io import ArraySource
from mimo.decompose.pipeline import Options, decompose
from mimo.decompose.synthetic import TruthObserver
from mimo.motion import load_npz
from mimo.pipeline.template import load_template

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def decomposed(tmp_path_factory):
    root = tmp_path_factory.mktemp("decompose")
    (clip_dir,) = synth_dataset(root / "synth", seed=3, clips=1, frames=8, size=96, occluder_prob=1.0)
    obs = TruthObserver(clip_dir)
    source = ArraySource(np.asarray(obs.clip.frames), 30.0)
    opt = Options(focal=float(obs.camera.K[0, 0, 0]), chunk=3, min_area=4, grow=1, keypoint_px=0.3, fit_steps=200)
    report = decompose(source, root / "out", obs, opt)
    return root / "out", obs, report


def test_outputs_read_back_with_the_template_clip_and_motion_readers(decomposed):
    out, obs, report = decomposed
    t = load_template(out / "template")
    assert t.codes.shape == (8, 96, 96, 3) and t.occlusion.shape == (8, 96, 96) and t.fps == 30.0
    clip = read_clip(out / "clip")
    assert clip.num_frames == 8 and clip.meta["body_model"] == "open"
    np.testing.assert_array_equal(clip.frames, obs.clip.frames)
    motion, camera = load_npz(out / "motion.npz")
    assert motion.num_frames == 8 and camera.num_frames == 8 and camera.width == 96
    assert (out / "contact_sheet.png").is_file()
    saved = json.loads((out / "report.json").read_text())
    assert set(saved["seconds"]) >= {"fit", "compose"}


def test_the_template_generates_with_the_preview_backend(decomposed, tmp_path):
    out, _, _ = decomposed
    assert main(["generate", "--preview", "--template", str(out / "template"), "--out", str(tmp_path / "gen.mp4")]) == 0
    from mimo.video import read_frames

    assert read_frames(tmp_path / "gen.mp4").shape[0] == 8


def test_fit_scene_and_occlusion_match_the_synthetic_truth(decomposed):
    out, obs, _ = decomposed
    motion, camera = load_npz(out / "motion.npz")
    import torch

    from mimo.body import load_body

    body = load_body("open")
    p = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in motion.bodies[0].params().items()}
    joints = body(**p).joints[:, :22].double().numpy() @ camera.R[0].T + camera.t[0]
    err = np.linalg.norm(joints - obs.joints_cam, axis=-1).mean()
    assert err < 0.05, f"mean joint error {err * 100:.1f} cm"
    clip = read_clip(out / "clip")
    # the scene: synth's scene plate (background + occluders) where the plate saw it
    diff = np.abs(clip.scene.astype(int) - np.asarray(obs.clip.scene).astype(int)).mean()
    assert diff < 6, diff
    # occlusion: synth's occluders where they cover the body
    truth = obs.body_mask & (np.asarray(obs.clip.occlusion) >= 128)
    got = clip.occlusion > 0
    assert truth.sum() > 20
    iou = (truth & got).sum() / (truth | got).sum()
    assert iou > 0.5, iou
    # the codes cover the body where the truth has it
    body_iou = ((clip.codes.any(-1)) & obs.body_mask).sum() / ((clip.codes.any(-1)) | obs.body_mask).sum()
    assert body_iou > 0.8, body_iou


def test_tiny_models_decompose_a_video_from_the_command_line(tmp_path):
    from mimo.decompose.tiny import save_tiny
    from mimo.video import write_frames

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    write_frames(tmp_path / "v.mp4", frames, fps=10)
    paths = save_tiny(tmp_path / "models")
    argv = ["decompose", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "out"), "--threshold", "0.01",
            "--device", "cpu", "--chunk", "2", "--fit-steps", "30"]
    for stage, path in paths.items():
        argv += [f"--{stage}", str(path)]
    assert main(argv) == 0
    out = tmp_path / "out"
    assert load_template(out / "template").codes.shape == (4, 48, 64, 3)
    assert read_clip(out / "clip").num_frames == 4
    report = json.loads((out / "report.json").read_text())
    assert set(report["seconds_per_frame"]) == {"detect", "segment", "keypoints", "depth", "fit", "compose"}
    assert report["tracks"] and report["track"] == 0
    assert main(argv) == 2  # the folder now holds outputs: not overwritten without --overwrite
