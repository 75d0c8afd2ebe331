"""Each model stage runs end to end on tiny random models built from their transformers configs
and loaded back with the real from_pretrained code (nothing downloaded)."""
from __future__ import annotations

import numpy as np
import pytest

from mimo.decompose import models, stages
from mimo.decompose.tiny import save_tiny

H, W = 48, 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    paths = save_tiny(tmp_path_factory.mktemp("tiny_models"))
    return {stage: models.load(stage, str(path)) for stage, path in paths.items()}


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(2)]


def test_detector_gives_boxes_inside_the_frame(tiny, frames):
    boxes = stages.detect(tiny["detector"], frames, threshold=0.0)
    assert len(boxes) == 2
    for b in boxes:
        assert b.shape[1] == 5 and len(b) >= 1
        assert np.all(b[:, 4] >= 0) and np.all(b[:, 4] <= 1)


def test_segmenter_gives_a_full_size_mask(tiny, frames):
    masks = stages.segment(tiny["segmenter"], frames, np.array([[5, 4, 40, 44, 1], [10, 2, 50, 40, 1.0]]))
    assert masks.shape == (2, H, W) and masks.dtype == bool


def test_pose_gives_17_keypoints_near_the_box(tiny, frames):
    boxes = np.array([[5, 4, 40, 44, 1], [10, 2, 50, 40, 1.0]])
    kp = stages.keypoints(tiny["pose"], frames, boxes)
    assert kp.shape == (2, 17, 3)
    for k, b in zip(kp, boxes):  # maxima map back into ViTPose's crop: the box widened to the
        c = (b[:2] + b[2:4]) / 2  # model's 3:4 input and grown (heatmap edges reach past it)
        w, h = b[2] - b[0], b[3] - b[1]
        assert np.all(np.abs(k[:, 0] - c[0]) <= 1.25 * max(w, 0.75 * h))
        assert np.all(np.abs(k[:, 1] - c[1]) <= 1.25 * max(w / 0.75, h))
        assert np.all(k[:, 2] >= 0) and np.all(k[:, 2] <= 1)


def test_depth_gives_a_full_size_map(tiny, frames):
    d = stages.depth(tiny["depth"], frames)
    assert d.shape == (2, H, W) and np.isfinite(d).all()
    assert stages.depth_kind(tiny["depth"]) == "relative"


def test_tracker_follows_the_main_person_through_a_gap():
    person = lambda x: np.array([x, 10, x + 20, 50, 0.9])  # noqa: E731
    small = lambda x: np.array([60 - x, 5, 66 - x, 15, 0.9])  # noqa: E731
    dets = [np.stack([person(2 * f), small(f)]) if f != 3 else small(f)[None] for f in range(6)]
    tracks = stages.track(dets)
    main = tracks[0]
    assert main.frames == [0, 1, 2, 4, 5]
    boxes = stages.track_boxes(main, 6)
    np.testing.assert_allclose(boxes[3, :4], person(6)[:4])  # interpolated over the gap
    assert boxes[3, 4] == 0 and len(tracks) == 2


def test_a_missing_model_names_the_flag_and_the_command(tmp_path):
    with pytest.raises(models.ModelMissing) as e:
        models.load("pose", str(tmp_path / "nowhere"))
    assert str(e.value).startswith("--pose: ") and "mimo weights download" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(models.ModelMissing, match="no config.json"):
        models.load("depth", str(tmp_path / "empty"))


def test_download_plan_takes_configs_and_one_weights_form():
    from mimo.models.download import decompose_repos, plan_model_files

    listing = {"config.json": 1, "preprocessor_config.json": 1, "README.md": 1, "model.safetensors": 9,
               "pytorch_model.bin": 9, "onnx/model.onnx": 9}
    assert plan_model_files(listing) == ["config.json", "preprocessor_config.json", "model.safetensors"]
    sharded = {"config.json": 1, "model.safetensors.index.json": 1, "model-00002-of-00002.safetensors": 5,
               "model-00001-of-00002.safetensors": 5}
    assert plan_model_files(sharded) == ["config.json", "model.safetensors.index.json",
                                         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    with pytest.raises(ValueError, match="no model.safetensors"):
        plan_model_files({"config.json": 1}, "x/y")
    assert set(decompose_repos()) == {"detector", "segmenter", "pose", "depth"}


def test_mimo_imports_and_parses_without_transformers_or_opencv(tmp_path):
    """The decomposition's heavy dependencies are imported only when it runs: with packages
    named transformers and cv2 that fail on import first on the path, mimo still imports and
    every command (decompose included) still parses."""
    import os
    import subprocess
    import sys

    for name in ("transformers", "cv2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed')\n")
    code = ("import mimo, mimo.decompose.pipeline, mimo.decompose.fit, mimo.decompose.scene\n"
            "from mimo.cli import build_parser\n"
            "build_parser().parse_args(['decompose', 'v.mp4', '--out', 'o'])\n"
            "import sys; assert 'transformers' not in sys.modules and 'cv2' not in sys.modules\n"
            "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.stdout.strip() == "ok", res.stderr[-2000:]


def test_inpainting_pipeline_download_plan_takes_configs_and_one_weights_form_per_component():
    from mimo.models.download import plan_pipeline_files

    listing = {"model_index.json": 1, "README.md": 1, "sd-v1-5-inpainting.ckpt": 9,
               "scheduler/scheduler_config.json": 1,
               "tokenizer/vocab.json": 1, "tokenizer/merges.txt": 1, "tokenizer/tokenizer_config.json": 1,
               "text_encoder/config.json": 1, "text_encoder/model.safetensors": 9, "text_encoder/pytorch_model.bin": 9,
               "text_encoder/model.fp16.safetensors": 5,
               "unet/config.json": 1, "unet/diffusion_pytorch_model.bin": 9,
               "unet/diffusion_pytorch_model.safetensors": 9, "unet/diffusion_pytorch_model.fp16.safetensors": 5,
               "vae/config.json": 1, "vae/diffusion_pytorch_model.safetensors.index.json": 1,
               "vae/diffusion_pytorch_model-00001-of-00002.safetensors": 5,
               "vae/diffusion_pytorch_model-00002-of-00002.safetensors": 5,
               "onnx/unet/model.onnx": 9}
    assert plan_pipeline_files(listing) == [
        "model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
        "text_encoder/model.safetensors", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors.index.json", "vae/diffusion_pytorch_model-00001-of-00002.safetensors",
        "vae/diffusion_pytorch_model-00002-of-00002.safetensors"]
    with pytest.raises(ValueError, match="no model_index.json"):
        plan_pipeline_files({"config.json": 1}, "x/y")
    with pytest.raises(ValueError, match="no weights in unet/"):
        plan_pipeline_files({"model_index.json": 1, "unet/config.json": 1}, "x/y")
