"""Preview backend: pixel-exact compositing of scene, code-coloured body and occlusion layer."""
from __future__ import annotations

import numpy as np
import pytest

from mimo.pipeline.backends import PreviewBackend, composite_preview, load_backend
from mimo.pipeline.job import Backend, GenerationJob, JobCancelled, JobEvents


def _job(F=3, H=16, W=24, **kw):
    rng = np.random.default_rng(1)
    codes = np.zeros((F, H, W, 3), np.uint8)
    for i in range(F):  # a body rectangle that moves right by 2 px per frame
        codes[i, 4:12, 2 + 2 * i:10 + 2 * i] = rng.integers(1, 256, (8, 8, 3))
    char = rng.integers(0, 256, (20, 10, 3), dtype=np.uint8)
    return GenerationJob(character=char, codes=codes, **kw)


class Recorder:
    def __init__(self, cancel_after=None):
        self.frames, self.progress, self.cancel_after = [], [], cancel_after

    def events(self):
        return JobEvents(
            progress=lambda s, k, n: self.progress.append((s, k, n)),
            frame=lambda i, img: self.frames.append((i, img.copy())),
            cancelled=lambda: self.cancel_after is not None and len(self.frames) >= self.cancel_after)


def test_load_backend():
    b = load_backend("preview")
    assert isinstance(b, PreviewBackend) and isinstance(b, Backend) and b.name == "preview"
    with pytest.raises(ValueError, match="name: expected one of"):
        load_backend("nope")
    with pytest.raises(ValueError, match="weights: .*mimo weights download"):
        load_backend("mimo")


def test_default_scene_is_white_and_body_is_codes():
    job = _job()
    rec = Recorder()
    stats = load_backend("preview").generate(job, rec.events())
    assert [i for i, _ in rec.frames] == [0, 1, 2]
    assert rec.progress[-1] == ("composite", 3, 3)
    assert stats["frames"] == 3
    for i, img in rec.frames:
        assert img.shape == (16, 24, 3) and img.dtype == np.uint8
        body = np.zeros((16, 24), bool)
        body[4:12, 2 + 2 * i:10 + 2 * i] = True
        np.testing.assert_array_equal(img[body], job.codes[i][body])
        assert (img[~body] == 255).all()


def test_scene_mask_and_occlusion_pixelwise():
    rng = np.random.default_rng(2)
    job = _job()
    F, H, W = job.codes.shape[:3]
    job.scene = rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8)
    # an explicit mask that excludes the body's top row and includes a black body pixel
    mask = np.any(job.codes != 0, -1)
    mask[:, 4] = False
    mask[:, 13, 5] = True
    job.code_mask = mask
    job.occlusion = np.zeros((F, H, W), np.uint8)
    job.occlusion[:, :, 6] = 255                     # fully opaque occluder column
    job.occlusion[:, 8, :] = rng.integers(0, 256, W)  # a row of partial alphas
    rec = Recorder()
    PreviewBackend().generate(job, rec.events())
    for i, img in rec.frames:
        for y in range(H):
            for x in range(W):
                base = job.codes[i, y, x] if mask[i, y, x] else job.scene[i, y, x]
                a = job.occlusion[i, y, x] / 255.0
                want = np.rint(base * (1 - a) + job.scene[i, y, x] * a)
                np.testing.assert_array_equal(img[y, x], want, err_msg=f"frame {i} pixel {(y, x)}")
    # the explicit mask was honoured: black body pixel shown as black, masked-out row shows scene
    assert (rec.frames[0][1][13, 5] == 0).all()
    np.testing.assert_array_equal(rec.frames[0][1][4, 7], job.scene[0, 4, 7])


def test_cancel_stops_between_frames():
    rec = Recorder(cancel_after=2)
    with pytest.raises(JobCancelled):
        PreviewBackend().generate(_job(F=5), rec.events())
    assert [i for i, _ in rec.frames] == [0, 1]


def test_bad_job_raises_value_error_naming_field():
    job = _job()
    job.scene = np.zeros((2, 16, 24, 3), np.uint8)
    with pytest.raises(ValueError, match="scene: expected shape"):
        PreviewBackend().generate(job, JobEvents())


def test_composite_preview_stack_matches_per_frame():
    job = _job()
    occ = np.full(job.codes.shape[:3], 100, np.uint8)
    scene = np.full(job.codes.shape, 7, np.uint8)
    stack = composite_preview(job.codes, None, scene, occ)
    for i in range(len(job.codes)):
        np.testing.assert_array_equal(stack[i], composite_preview(job.codes[i], None, scene[i], occ[i]))
