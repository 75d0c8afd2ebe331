"""Each model stage runs end to end on tiny random models built from their transformers configs
and loaded back with the real from_pretrained code (nothing downloaded)."""
from __future__ import annotations

import numpy as np
import pytest

from mimo.decompose import models, stages
from mimo.decompose.tiny import save_tiny

H, W = 48, 64


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
