"""The preloaded batch path (mimo/data/preload.py) against the general one (MimoDataset + collate):
the same items bit for bit, for single frames and windows, down- and up-sizing, character and
frame references; its resampler against PIL itself; and a training run that gives the same
losses either way."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import _clip

from mimo.data.dataset import MimoDataset
from mimo.data.layout import write_clip
from mimo.data.preload import PreloadedData, resample_matrix
from mimo.train.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("preload")
    write_clip(root / "a", _clip(0, F=8))                 # a character image as the reference
    write_clip(root / "b", _clip(1, F=8, characters=0))   # a frame of the clip as the reference
    clip = _clip(2, F=8, characters=0)
    clip.codes[:] = 0                                     # no body anywhere: the whole frame
    write_clip(root / "c", clip)
    return root


@pytest.mark.parametrize("frames, size", [(1, 32), (3, 32), (1, 64), (4, 40)])
def test_preloaded_batches_equal_the_general_path(dataset, frames, size):
    ds = MimoDataset(dataset, num_frames=frames, size=size, seed=7, items_per_epoch=30)
    want = torch.utils.data.default_collate([ds[i] for i in range(30)])
    got = PreloadedData(ds).batch(range(30))
    kinds = {ds.draw(i)[2][0] for i in range(30)}
    assert kinds == {"character", "frame"}  # both kinds of reference are exercised
    assert {ds.draw(i)[0] for i in range(30)} == {0, 1, 2}
    for key in want:
        assert got[key].shape == want[key].shape and got[key].dtype == want[key].dtype, key
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("kind, resample", [("lanczos", Image.LANCZOS), ("bicubic", Image.BICUBIC)])
@pytest.mark.parametrize("src, dst", [(48, 32), (37, 64), (96, 20), (16, 224)])
def test_resample_matrix_is_pils_resize(kind, resample, src, dst):
    """One pass of the matrix, rounded PIL's way, against PIL on a 1-pixel-high image."""
    rng = np.random.default_rng(src * dst)
    row = rng.integers(0, 256, (1, src, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(row).resize((dst, 1), resample))[0]
    m = resample_matrix(src, dst, kind)
    got = np.clip(np.floor((m @ row[0].astype(np.float64) + 2 ** 21) / 2 ** 22), 0, 255)
    np.testing.assert_array_equal(got, want)
    assert np.all(m.sum(1) > 0.99 * 2 ** 22)


def test_training_with_preload_logs_the_same_losses(dataset, tmp_path):
    runs = {}
    for preload in (False, True):
        out = tmp_path / f"run{int(preload)}"
        train(TrainConfig(data=str(dataset), out=str(out), stage="image", size=32, batch=2, steps=3,
                          log_every=1, seed=1, preload=preload, device="cpu"), log=lambda s: None)
        runs[preload] = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(runs[True]) == 3
    np.testing.assert_allclose(runs[True], runs[False], rtol=1e-5)
