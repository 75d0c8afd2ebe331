"""The pipeline's VAE stages: one encode per run of identical scene frames, and a compiled VAE
that only ever sees whole chunks (so a clip's length never compiles again) and gives the same
frames. Tiny networks on the CPU; dynamo's eager backend stands in for inductor."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mimo.pipeline import fast as fast_mode
from mimo.pipeline import pipeline as pipeline_module
from mimo.pipeline.frames import repeat_runs
from mimo.pipeline.pipeline import MimoPipeline

H = W = 64
F = 10
# Float32 round-off of a whole run (VAE encode, two UNet steps, decode) when the same frames go
# through in other batch shapes, or on another thread count: measured up to 1.1e-5 between the
# compiled (chunked) and plain VAE and 1.6e-5 between OMP_NUM_THREADS=1 and 2, so 1e-5 failed
# depending on the machine. 1e-4 leaves room for other CPUs and is 1/39 of one 8-bit level.
ROUND_OFF = 1e-4


@pytest.fixture(scope="module")
def pipe(tiny_weights):
    return MimoPipeline.from_pretrained(tiny_weights, device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(3)
    char = rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)
    codes = np.zeros((F, H, W, 3), np.uint8)
    for i in range(F):
        codes[i, 14:50, 18 + i:40 + i] = rng.integers(30, 256, 3)
    plates = rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    scene = plates[[0, 0, 0, 0, 1, 2, 2, 2, 2, 2]].copy()  # a static camera, cut twice
    return char, codes, scene


def _run(pipe, char, codes, scene, **kw):
    kw = dict(dict(context_frames=8, context_overlap=2, num_inference_steps=2, seed=7), **kw)
    return pipe(char, codes, scene, height=H, width=W, **kw)


def test_repeat_runs_counts_consecutive_identical_frames():
    a, b = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)
    assert repeat_runs([a, a.copy(), b, a, a]) == [2, 1, 2]
    assert repeat_runs([a] * 5) == [5]
    assert repeat_runs([a, np.zeros((4, 5, 3), np.uint8)]) == [1, 1]  # same bytes, other size
    assert repeat_runs(np.stack([a, a, b])) == [2, 1]
    assert repeat_runs([]) == []


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_identical_scene_frames_are_encoded_once_with_the_same_result(pipe, inputs, mode, monkeypatch):
    char, codes, scene = inputs
    once = _run(pipe, char, codes, scene, mode=mode)
    assert once.stats["scene_frames_encoded"] == 3
    monkeypatch.setattr(pipeline_module, "repeat_runs", lambda frames: [1] * len(frames))
    every = _run(pipe, char, codes, scene, mode=mode)
    assert every.stats["scene_frames_encoded"] == F
    np.testing.assert_allclose(once.frames, every.frames, atol=ROUND_OFF)
    monkeypatch.undo()
    assert _run(pipe, char, codes, None, mode=mode).stats["scene_frames_encoded"] == 1  # white scene


def test_compiled_vae_sees_whole_chunks_only_and_gives_the_same_frames(pipe, inputs):
    """Encoder and decoder compiled (a recording eager backend): every compiled graph gets a full
    chunk (the 1-frame reference and the short last chunks are padded), previews run eagerly,
    "compile" is announced on the first job only (exact mode runs the same chunk shapes), and
    frames match the uncompiled VAE's."""
    from mimo.models.compile import is_vae_compiled, uncompile_vae

    char, codes, scene = inputs
    scene = np.random.default_rng(4).integers(0, 256, (F, H, W, 3), dtype=np.uint8)  # no repeats
    plain = _run(pipe, char, codes, scene, mode="fast")
    seen = {"encoder": set(), "decoder": set()}

    def recorder(side, pixels):
        def backend(gm, example_inputs):
            seen[side] |= {t.shape[0] for t in example_inputs
                           if isinstance(t, torch.Tensor) and t.ndim == 4 and t.shape[-1] == pixels}
            return gm.forward
        return backend

    torch._dynamo.reset()
    try:
        pipe.vae.encoder.compile(backend=recorder("encoder", W), dynamic=False)
        pipe.vae.decoder.compile(backend=recorder("decoder", W // 8), dynamic=False)
        assert is_vae_compiled(pipe.vae)
        stages, previews = [], []
        first = _run(pipe, char, codes, scene, mode="fast", stage_callback=stages.append,
                     preview_every=1, preview_callback=lambda *a: previews.append(a))
        assert stages == ["compile"] and first.stats["compiled_vae"] and len(previews) == 2
        again = _run(pipe, char, codes[:7], scene[:7], mode="fast", stage_callback=stages.append)
        assert stages == ["compile"] and again.frames.shape[0] == 7
        exact = _run(pipe, char, codes, scene, mode="exact", stage_callback=stages.append)
        assert stages == ["compile"] and exact.stats["compiled_vae"]  # exact mode: the same shapes
        assert seen == {"encoder": {fast_mode.ENCODE_CHUNK}, "decoder": {fast_mode.DECODE_CHUNK}}
    finally:
        uncompile_vae(pipe.vae)
        pipe._compiled_shapes.clear()
        torch._dynamo.reset()
    np.testing.assert_allclose(first.frames, plain.frames, atol=ROUND_OFF)
    np.testing.assert_allclose(exact.frames, _run(pipe, char, codes, scene, mode="exact").frames,
                               atol=ROUND_OFF)
