"""The tiny MIMO shipped in examples/tiny_mimo (trained by benchmarks/quality.py, see its README):
small enough to ship, loads strictly, and generates on a CPU -- and what it generates is the
work of trained networks: on a held-out synthetic clip the scene around the body and the figure on
it are clearly closer to the ground truth than what the untrained networks of the
same shapes do (the model is weak: 4 minutes of training; see its README)."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny_mimo"
SIZE, FRAMES = 128, 4


def test_the_shipped_model_is_small_and_loads_strictly(capsys):
    from mimo.cli import main
    from mimo.models import load_mimo

    files = [p for p in TINY.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20_000_000
    weights = [p for p in files if p.suffix in (".pth", ".bin", ".safetensors")]
    assert len(weights) == 7
    m = load_mimo(TINY)  # strict: raises on any missing, unexpected or misshaped key
    assert m.unet_config.block_out_channels == (32, 48, 56, 56)
    assert next(m.denoising_unet.parameters()).dtype == torch.float32  # fp16 files, cast on load
    assert main(["weights", "check", str(TINY)]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    """The first frames of one held-out clip (test split: new character, motion, view),
    prepared as the yardstick prepares them."""
    from mimo.data.dataset import MimoDataset
    from mimo.data.synth import synth_dataset

    root = tmp_path_factory.mktemp("heldout")
    synth_dataset(root, seed=11, clips=1, frames=FRAMES, size=SIZE, split="test", occluder_prob=0.0)
    ds = MimoDataset(root, num_frames=FRAMES, size=SIZE)
    clip = ds.clips[0]
    item = ds.prepare(clip, np.arange(FRAMES), clip.characters[0])
    u8 = lambda x: np.rint((x.clamp(-1, 1) + 1) * 127.5).byte().permute(1, 2, 3, 0).numpy()  # noqa: E731
    return {"truth": u8(item["frames"]), "scene": u8(item["scene"]),
            "codes": np.rint(item["codes"].permute(1, 2, 3, 0).numpy() * 255).astype(np.uint8),
            "reference": u8(item["reference"][:, None])[0]}


def _generate(folder, w) -> np.ndarray:
    from mimo.pipeline.pipeline import MimoPipeline

    pipe = MimoPipeline.from_pretrained(folder, device="cpu", dtype=torch.float32, compile=False)
    out = pipe(w["reference"], w["codes"], w["scene"], height=SIZE, width=SIZE, num_inference_steps=4,
               seed=0, context_frames=FRAMES, context_overlap=0).frames
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _psnr(a, b, mask) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[mask].mean()
    return 10 * np.log10(255.0 ** 2 / mse)


def test_the_shipped_model_generates_what_training_taught_it(window, tmp_path):
    from mimo.models import make_tiny
    from mimo.models.config import UNetConfig
    from mimo.pipeline.roi import human_mask

    frames = _generate(TINY, window)
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    untrained = _generate(make_tiny(tmp_path / "untrained", seed=0, unet_config=UNetConfig(
        block_out_channels=(32, 48, 56, 56), cross_attention_dim=32, norm_num_groups=8)), window)
    body = human_mask(window["codes"])
    assert body.mean() > 0.05
    truth = window["truth"]
    scores = {name: (_psnr(f, truth, ~body), _psnr(f, truth, body)) for name, f in
              (("trained", frames), ("untrained", untrained))}
    # measured: trained 13.8 dB around the body, 12.6 dB on it; untrained 9.3 and 9.8 dB
    assert scores["trained"][0] > 12.0, scores
    assert scores["trained"][0] > scores["untrained"][0] + 3.0, scores
    assert scores["trained"][1] > scores["untrained"][1] + 1.5, scores
